"""The MAML paper's image network in miniature: ``derivations/conv.md`` and ``batchnorm.md``.

Finn et al. (2017), section 5.2 and appendix A.1, classify images with 4 blocks of a 3x3
convolution, batch normalisation, ReLU and 2x2 max-pooling, then a fully connected layer to the
classes; PyTorch's MAML example (``functorch/examples/maml_omniglot``) uses 3 such blocks with
``BatchNorm2d(track_running_stats=False)``. :class:`ConvNet` is that network for small images:
``blocks`` blocks ``[Conv2d(c, channels, 3, padding=1), BatchNorm2d(channels), ReLU(),
MaxPool2d(2)]`` (each halves the height and width, rounding down), then ``Flatten()`` and
``Linear(channels h w, classes)``, with the softmax head by default. Batch statistics are those of
the set being evaluated (the support set at every inner step, the query set for the query loss).
ANIL's mask, the last layer only, is ``ConvNet(...).mask(-1)``.
"""

from .. import _validate
from .layers import BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU
from .sequential import Sequential, checked_input_shape


class ConvNet(Sequential):
    """``blocks`` blocks of 3x3 convolution (padding 1), batch norm, ReLU and 2x2 max-pooling on
    images ``input_shape = (C, H, W)``, then a linear layer to ``classes`` outputs, with the loss
    head ``loss`` (``"softmax"``: integer labels in ``[0, classes)``). ``theta`` is flat, in the
    order of PyTorch's ``parameters_to_vector`` of the equivalent ``nn.Sequential``."""

    _label = "the ConvNet"

    def __init__(self, classes, *, blocks=2, channels=8, input_shape=(1, 8, 8), loss="softmax"):
        classes = _validate.integer(classes, "classes", minimum=1)
        blocks = _validate.integer(blocks, "blocks", minimum=1)
        channels = _validate.integer(channels, "channels", minimum=1)
        shape = checked_input_shape(input_shape)
        if len(shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W) for the ConvNet; got {shape}")
        c, height, width = shape
        if min(height, width) < 2 ** blocks:
            raise ValueError(f"{blocks} blocks halve the images {blocks} times: input_shape {shape} needs a "
                             f"height and width of at least {2 ** blocks}")
        layers = []
        for _ in range(blocks):
            layers += [Conv2d(c, channels, 3, padding=1), BatchNorm2d(channels), ReLU(), MaxPool2d(2)]
            c, height, width = channels, height // 2, width // 2
        layers += [Flatten(), Linear(channels * height * width, classes)]
        super().__init__(layers, loss=loss, input_shape=shape)
        self.classes, self.blocks, self.channels = classes, blocks, channels
        self.name = repr(self)

    def __repr__(self):
        return (f"ConvNet(classes={self.classes}, blocks={self.blocks}, channels={self.channels}, "
                f"input_shape={self.input_shape}, loss={self.loss_name!r})")

    @property
    def slug(self):
        """``convnet-5-2x8-1x8x8-softmax``: for identifiers."""
        return (f"convnet-{self.classes}-{self.blocks}x{self.channels}-{'x'.join(map(str, self.input_shape))}-"
                f"{self.loss_name}")

    def spec(self):
        """``{"model": "convnet", "classes": ..., "blocks": ..., "channels": ..., "input_shape": [...],
        "loss": ...}``."""
        return {"model": "convnet", "classes": self.classes, "blocks": self.blocks, "channels": self.channels,
                "input_shape": list(self.input_shape), "loss": self.loss_name}

    def __eq__(self, other):
        return isinstance(other, ConvNet) and self.spec() == other.spec()

    def __hash__(self):
        return hash((ConvNet, self.classes, self.blocks, self.channels, self.input_shape, self.loss_name))
