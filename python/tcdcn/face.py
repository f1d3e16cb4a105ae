"""The result type: one found face with its box, landmarks and attributes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tcdcn.boxes import five_points


@dataclass
class Face:
    box: np.ndarray                    # left, top, right, bottom (image pixels)
    score: float                       # detector score (1.0 for given boxes)
    landmarks: np.ndarray              # K x 2, image pixels
    attributes: dict = field(default_factory=dict)  # task -> (label, probability)
    scheme: str = "5pt"                # the landmark scheme (schemes.SCHEMES)
    track_id: int | None = None        # video tracking (tracking.Tracker): one id per face
    turn: int = 0                      # turn (degrees clockwise: a quarter turn or a tilt)
                                       # that made the face upright for the net
                                       # (search.Turned); 0: upright
    uncertainty: np.ndarray | None = None   # K: each point's predicted error, image pixels
                                            # (models with an uncertainty head; else None)
    quality: float | None = None       # 0..1 from the uncertainty: 1 - predicted NME / 10%
                                       # (0: the points are predicted to be a failure)

    @property
    def pose(self) -> str | None:
        return self.attributes.get("pose", (None, None))[0]

    @property
    def five_points(self) -> np.ndarray:
        """Eye centres, nose tip, mouth corners (the 5-point scheme's order), for any
        scheme: a 68-point face's are derived (eye centres = means of each eye's six
        points), so code written for the 5-point model works with either."""
        return five_points(self.landmarks)

    def as_dict(self) -> dict:
        def rounded(points):
            return [[round(float(x), 2), round(float(y), 2)] for x, y in points]
        out = {"box": [round(float(v), 2) for v in self.box], "score": round(self.score, 4),
               "scheme": self.scheme, "landmarks": rounded(self.landmarks),
               "attributes": {k: {"label": v[0], "probability": round(v[1], 4)}
                              for k, v in self.attributes.items()}}
        if self.scheme != "5pt":
            out["five_points"] = rounded(self.five_points)
        if self.uncertainty is not None:
            out["uncertainty"] = [round(float(u), 2) for u in self.uncertainty]
            out["quality"] = round(float(self.quality), 4)
        if self.track_id is not None:
            out["track_id"] = self.track_id
        if self.turn:
            out["turn"] = self.turn
        return out
