"""Camera-path specifications: the :class:`PathSpec` dataclass, the preset table and the text grammar.

Grammar (case-insensitive, spaces ignored)::

    spec    := [ "bullet:" FRAME ":" ] move { "+" move } [ ":" timing ]
    move    := KIND [ ":" DIRECTION [ ":" AMOUNT ] ]
    timing  := "gradual" | "direct"

``KIND`` is a key of :data:`PRESETS` (``arc`` is an alias of ``orbit``, ``dollyzoom``/``vertigo`` of
``dolly_zoom``); ``DIRECTION`` one of the preset's directions (default: the first); ``AMOUNT`` a
number in the preset's unit (default: the preset's default). Moves joined with ``+`` are composed
in order, each in the camera frame left by the previous one. Examples::

    orbit:left:30            arc 30 degrees to the left around the pivot, easing in from the source pose
    dolly:in:0.5             move forward by half the pivot distance
    zoom:in:2                double the focal length
    dolly_zoom:out:0.5       move back by half the pivot distance, keep the pivot plane's size
    orbit:up:15+dolly:in:0.2:direct
    bullet:40:orbit:right:30 freeze the content at source frame 40 while orbiting 30 degrees right
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import ValidationError

TIMINGS = ("gradual", "direct")


@dataclass(frozen=True)
class PresetParam:
    """One numeric preset parameter for the add-on UI: name, unit, default and allowed range."""

    name: str
    unit: str
    default: float
    minimum: float
    maximum: float
    description: str


@dataclass(frozen=True)
class Preset:
    """A camera move: its directions (first = default) and its single amount parameter."""

    name: str
    label: str
    directions: tuple[str, ...]
    amount: PresetParam
    description: str

    def to_dict(self) -> dict:
        return {"name": self.name, "label": self.label, "directions": list(self.directions),
                "amount": self.amount.__dict__.copy(), "description": self.description}


_ANGLE = "deg"
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("orbit", "Orbit / arc", ("left", "right", "up", "down"),
               PresetParam("angle", _ANGLE, 30.0, 0.0, 180.0, "rotation around the pivot"),
               "Circle the pivot point (pivot_depth along the source view axis), keeping it centred."),
        Preset("dolly", "Dolly", ("in", "out"),
               PresetParam("distance", "fraction of pivot depth", 0.3, 0.0, 0.95,
                           "travel along the view axis; 'in' must stay in front of the pivot"),
               "Move the camera along its view axis."),
        Preset("zoom", "Zoom", ("in", "out"),
               PresetParam("factor", "x focal length", 1.5, 1.0, 10.0, "focal length multiplier"),
               "Change the focal length; the camera does not move."),
        Preset("dolly_zoom", "Dolly zoom", ("in", "out"),
               PresetParam("distance", "fraction of pivot depth", 0.3, 0.0, 0.95,
                           "travel along the view axis"),
               "Dolly while zooming so that the pivot plane keeps its size (vertigo effect)."),
        Preset("pan", "Pan", ("left", "right"),
               PresetParam("angle", _ANGLE, 20.0, 0.0, 90.0, "rotation about the camera's vertical axis"),
               "Turn the camera left or right in place."),
        Preset("tilt", "Tilt", ("up", "down"),
               PresetParam("angle", _ANGLE, 15.0, 0.0, 90.0, "rotation about the camera's horizontal axis"),
               "Turn the camera up or down in place."),
        Preset("roll", "Roll", ("left", "right"),
               PresetParam("angle", _ANGLE, 15.0, 0.0, 180.0,
                           "rotation about the view axis; 'right' dips the camera's right side"),
               "Rotate the camera about its view axis."),
    )
}
ALIASES = {"arc": "orbit", "dollyzoom": "dolly_zoom", "dolly-zoom": "dolly_zoom", "vertigo": "dolly_zoom"}
# Bullet time is a modifier, not a move: "bullet:FRAME:<moves>" (see PathSpec.freeze_frame).
BULLET_PARAM = PresetParam("freeze_frame", "source frame index", 0.0, 0.0, 100000.0,
                           "source frame whose content is frozen while the camera moves")


@dataclass(frozen=True)
class Move:
    """One move: ``kind`` in :data:`PRESETS`, a ``direction`` of that preset, ``amount`` in its unit."""

    kind: str
    direction: str
    amount: float

    def __post_init__(self) -> None:
        kind = ALIASES.get(self.kind, self.kind)
        object.__setattr__(self, "kind", kind)
        if kind not in PRESETS:
            raise ValidationError(f"unknown camera move {self.kind!r}; choose one of {sorted(PRESETS)}")
        preset = PRESETS[kind]
        if self.direction not in preset.directions:
            raise ValidationError(
                f"{kind} direction must be one of {list(preset.directions)}, got {self.direction!r}")
        amount = float(self.amount)
        lo, hi = preset.amount.minimum, preset.amount.maximum
        if not (math.isfinite(amount) and lo <= amount <= hi):
            raise ValidationError(
                f"{kind} {preset.amount.name} must be in [{lo:g}, {hi:g}] {preset.amount.unit}, got {self.amount}")
        object.__setattr__(self, "amount", amount)

    def to_text(self) -> str:
        return f"{self.kind}:{self.direction}:{self.amount:.10g}"


@dataclass(frozen=True)
class PathSpec:
    """A camera path relative to the source camera(s).

    ``moves`` are composed in order; ``timing`` is ``gradual`` (smoothstep ease from the source pose
    at frame 0 to the full move at the last frame) or ``direct`` (full move from frame 0);
    ``freeze_frame`` (bullet time) freezes the content, and the source camera, at that source frame.
    """

    moves: tuple[Move, ...]
    timing: str = "gradual"
    freeze_frame: int | None = None
    source_text: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "moves", tuple(self.moves))
        if not self.moves:
            raise ValidationError("a camera path needs at least one move")
        if self.timing not in TIMINGS:
            raise ValidationError(f"timing must be one of {list(TIMINGS)}, got {self.timing!r}")
        if self.freeze_frame is not None and (int(self.freeze_frame) != self.freeze_frame or self.freeze_frame < 0):
            raise ValidationError(f"bullet-time frame must be a non-negative integer, got {self.freeze_frame}")

    def to_text(self) -> str:
        """The grammar form; ``parse_path_spec(spec.to_text()) == spec``."""
        text = "+".join(m.to_text() for m in self.moves)
        if self.freeze_frame is not None:
            text = f"bullet:{self.freeze_frame}:{text}"
        return text if self.timing == "gradual" else f"{text}:{self.timing}"

    def to_dict(self) -> dict:
        return {"moves": [m.__dict__.copy() for m in self.moves], "timing": self.timing,
                "freeze_frame": self.freeze_frame}

    @classmethod
    def from_dict(cls, data: dict) -> PathSpec:
        try:
            moves = tuple(Move(str(m["kind"]), str(m["direction"]), float(m["amount"])) for m in data["moves"])
            freeze = data.get("freeze_frame")
            return cls(moves, str(data.get("timing", "gradual")), None if freeze is None else int(freeze))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"camera path spec needs moves [{{kind, direction, amount}}]: {exc}") from exc


def _parse_number(token: str, what: str, text: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise ValidationError(f"{what} {token!r} in camera path {text!r} is not a number") from None


def _parse_move(tokens: list[str], text: str) -> Move:
    kind = ALIASES.get(tokens[0], tokens[0])
    if kind not in PRESETS:
        raise ValidationError(
            f"unknown camera move {tokens[0]!r} in {text!r}; choose one of {sorted(PRESETS)} or 'bullet'")
    if len(tokens) > 3:
        raise ValidationError(f"too many fields in move {':'.join(tokens)!r} of {text!r} (KIND:DIRECTION:AMOUNT)")
    preset = PRESETS[kind]
    direction = tokens[1] if len(tokens) > 1 else preset.directions[0]
    amount = _parse_number(tokens[2], "amount", text) if len(tokens) > 2 else preset.amount.default
    return Move(kind, direction, amount)


def parse_path_spec(text: str) -> PathSpec:
    """Parse the grammar in this module's docstring into a :class:`PathSpec` (``ValidationError`` if bad)."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("camera path spec is empty; try e.g. 'orbit:left:30'")
    clean = "".join(text.split()).lower()
    freeze: int | None = None
    if clean.startswith("bullet"):
        head, _, rest = clean.partition(":")
        frame_token, _, rest = rest.partition(":")
        if head != "bullet" or not frame_token or not rest:
            raise ValidationError(f"bullet time is written 'bullet:FRAME:MOVE', got {text!r}")
        frame = _parse_number(frame_token, "bullet-time frame", text)
        if frame != int(frame):
            raise ValidationError(f"bullet-time frame must be an integer, got {frame_token!r}")
        freeze, clean = int(frame), rest
    timing = "gradual"
    for candidate in TIMINGS:
        if clean.endswith(":" + candidate):
            timing, clean = candidate, clean[: -len(candidate) - 1]
            break
    moves = []
    for part in clean.split("+"):
        if not part:
            raise ValidationError(f"empty move in camera path {text!r}")
        moves.append(_parse_move(part.split(":"), text))
    return PathSpec(tuple(moves), timing, freeze, source_text=text)


def presets_for_ui() -> dict[str, dict]:
    """Plain-data preset table (name -> directions, amount parameter with unit/default/min/max)."""
    table = {name: preset.to_dict() for name, preset in PRESETS.items()}
    table["bullet"] = {"name": "bullet", "label": "Bullet time", "directions": [],
                       "amount": BULLET_PARAM.__dict__.copy(),
                       "description": "Freeze the content at one source frame while another move plays."}
    table["timing"] = {"name": "timing", "label": "Timing", "directions": list(TIMINGS), "amount": None,
                       "description": "gradual: ease from the source pose; direct: the final pose from frame 0."}
    return table
