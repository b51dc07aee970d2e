"""`text_only`: the same backbone with the images dropped — the floor every mechanism's cost is compared with.

Adding an image is a no-op; the model sees exactly the text the other mechanisms see, so its time and
memory per turn are the cost of the text alone.
"""

from __future__ import annotations

from casa_eval.fusion._mechanism import Mechanism


class TextOnly(Mechanism):
    name = "text_only"
    sees_images = False
