"""`insertion`: the visual tokens are inserted into the text stream at the image position (LLaVA, Qwen2.5-VL).

The backbone sees one interleaved sequence under a single causal mask; image tokens take positions and
KV-cache slots like text. For ``[a b | I1 I2 I3 | c d | J1 J2 J3 | e f]`` the mask is the full lower
triangle over all 12 tokens. Streaming: every turn appends N image + t text tokens to every layer's
cache, so memory and attention cost grow with the conversation. No parameters beyond the shared
projector.
"""

from __future__ import annotations

import torch

from casa_eval.fusion._mechanism import Mechanism


class Insertion(Mechanism):
    name = "insertion"
    inserts_tokens = True

    def image_tokens(self, features: torch.Tensor) -> torch.Tensor:
        return features
