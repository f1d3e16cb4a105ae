"""The facts everything else imports: landmark schemes and the multi-task label layout."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LandmarkScheme:
    """A landmark annotation scheme.

    `flip_pairs` are the 0-based indices that trade places when the image is mirrored;
    `ocular` are the two points (or two groups of points, averaged) whose distance
    normalises the error ("inter-ocular distance").
    """
    name: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    ocular: tuple[tuple[int, ...], tuple[int, ...]]

    @property
    def count(self) -> int:
        return len(self.names)

    def flip_permutation(self) -> list[int]:
        """perm such that mirrored_points = points[perm] after negating x."""
        perm = list(range(self.count))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm


# MTFL / CNN_FacePoint order; left/right as seen in the image.
FIVE_POINT = LandmarkScheme(
    name="5pt",
    names=("left_eye", "right_eye", "nose", "left_mouth", "right_mouth"),
    flip_pairs=((0, 1), (3, 4)),
    ocular=((0,), (1,)),  # eye centres
)


def _ibug68() -> LandmarkScheme:
    names = ([f"jaw_{i}" for i in range(17)] + [f"brow_{i}" for i in range(10)]
             + [f"nose_{i}" for i in range(9)] + [f"eye_{i}" for i in range(12)]
             + [f"mouth_{i}" for i in range(20)])
    pairs = [(i, 16 - i) for i in range(8)]                 # jaw 0-16
    pairs += [(17 + i, 26 - i) for i in range(5)]           # brows 17-26
    pairs += [(31, 35), (32, 34)]                           # nostrils 31-35
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]            # outer lips
    pairs += [(60, 64), (61, 63), (65, 67)]                                 # inner lips
    return LandmarkScheme(name="68pt", names=tuple(names), flip_pairs=tuple(pairs),
                          ocular=((36,), (45,)))  # outer eye corners (300-W convention)


SIXTY_EIGHT_POINT = _ibug68()


# 68-point inter-pupil normalisation: the centres of the two eyes' six points.
IBUG68_PUPILS = ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47))


# 68-point regions (0-based index ranges), for per-region errors and for drawing contours.
IBUG68_REGIONS = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36),
                  "eyes": range(36, 48), "mouth": range(48, 68)}


# Polylines drawn for 68 points: (indices, closed).
IBUG68_CONTOURS = (
    (tuple(range(0, 17)), False), (tuple(range(17, 22)), False), (tuple(range(22, 27)), False),
    (tuple(range(27, 31)), False), (tuple(range(31, 36)), False),
    (tuple(range(36, 42)), True), (tuple(range(42, 48)), True),
    (tuple(range(48, 60)), True), (tuple(range(60, 68)), True))


SCHEMES = {s.name: s for s in (FIVE_POINT, SIXTY_EIGHT_POINT)}


@dataclass(frozen=True)
class Task:
    """An auxiliary classification task: its class names and loss weight."""
    name: str
    classes: tuple[str, ...]
    loss_weight: float


LANDMARK_LOSS_WEIGHT = 1.0


# Order of the attribute labels after the 2K landmark coordinates in every record.
TASKS = (
    Task("gender", ("male", "female"), 0.1),
    Task("smile", ("smiling", "not_smiling"), 0.1),
    Task("glasses", ("glasses", "no_glasses"), 0.1),
    Task("pose", ("left_profile", "left", "frontal", "right", "right_profile"), 0.3),
)


POSE_INDEX = [t.name for t in TASKS].index("pose")   # its place in the attribute vector


# Mirroring a face swaps its pose: left profile <-> right profile, left <-> right.
POSE_FLIP = (4, 3, 2, 1, 0)


# An attribute class id for a face without that label (e.g. 300-W faces added to 5-point
# training): the softmax losses and accuracies ignore it.
UNLABELLED = -1


def label_layout(scheme: LandmarkScheme, with_attributes: bool = True) -> dict[str, slice]:
    """Where each part lives in a record's label vector: 'landmarks' (x1, y1, x2, y2, ...
    divided by the crop size), then one 0-based class id per task."""
    layout = {"landmarks": slice(0, 2 * scheme.count)}
    if with_attributes:
        for i, task in enumerate(TASKS):
            start = 2 * scheme.count + i
            layout[task.name] = slice(start, start + 1)
    return layout


def label_dim(scheme: LandmarkScheme, with_attributes: bool = True) -> int:
    return 2 * scheme.count + (len(TASKS) if with_attributes else 0)


# The mask part of a mixed record's layout: its presence marks a mixed LMDB.
DENSE_MASK = "landmarks_mask"


def cross_layout(scheme: LandmarkScheme) -> dict[str, slice]:
    """A mixed record's label vector (tools/mix_lmdb.py: dense points from one data set,
    five points and attributes from another): 'landmarks' (2K), DENSE_MASK (1: the dense
    points are labelled), 'landmarks_5pt' (10), then one class id per task."""
    k = 2 * scheme.count
    layout = {"landmarks": slice(0, k), DENSE_MASK: slice(k, k + 1),
              "landmarks_5pt": slice(k + 1, k + 11)}
    for i, task in enumerate(TASKS):
        layout[task.name] = slice(k + 11 + i, k + 12 + i)
    return layout
