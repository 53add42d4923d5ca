"""The names a shared model's ``manifest.json`` may use, and the medseg code each one builds.

A manifest is data: it names a network, preprocessing steps and post-processing by the registered names below,
with arguments of checked types. :func:`build_network` and :func:`build_preprocessing` construct them from
medseg's own imports only; nothing in a manifest can name a module, a class or an expression.

Registered networks: ``monai.UNet``, ``monai.FlexibleUNet`` (backbones MONAI and :mod:`medseg.networks`
register, ``pretrained`` false), ``monai.DynUNet``, ``monai.BasicUNet``, ``monai.SegResNet``, ``monai.AttentionUnet``.

Registered preprocessing steps (applied in order after the image is read with its channels first):
``squeeze_slice`` (a 2D slice stored as a 3D file), ``scale_intensity`` (min-max to ``[minv, maxv]``),
``scale_intensity_range`` (``[a_min, a_max]`` -> ``[b_min, b_max]``), ``scale_intensity_range_percentiles``
(each image's ``lower`` and ``upper`` percentiles -> ``[b_min, b_max]``, optionally per channel), ``z_score`` (per
image, optionally per channel / non-zero voxels), ``normalize_intensity`` (fixed ``subtrahend``/``divisor``, e.g.
ImageNet mean and std), ``resize`` (to ``spatial_size``; ``anti_aliasing_filter`` ``torch``:
:class:`medseg.transforms.AntialiasedResized`, ``gaussian`` or absent: MONAI's ``Resized``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# ------------------------------------------------------------------ argument types


class ArgumentError(ValueError):
    """An argument that does not have its registered type; the message names it."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if not _is_int(v):
            return "an integer"
        if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
            return f"an integer in [{minimum}, {maximum}]"
        return None

    return check


def number(minimum: float | None = None, maximum: float | None = None) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if not _is_number(v):
            return "a number"
        if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
            return f"a number in [{minimum}, {maximum}]"
        return None

    return check


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def choice(*options: str) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if isinstance(v, str) and v.lower() in options else f"one of {', '.join(options)}"

    return check


def int_list(min_len: int = 1, max_len: int = 16, minimum: int = 0) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        ok = isinstance(v, list | tuple) and min_len <= len(v) <= max_len
        ok = ok and all(_is_int(x) and x >= minimum for x in v)
        return None if ok else f"a list of {min_len}-{max_len} integers >= {minimum}"

    return check


def number_list(max_len: int = 16) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        ok = isinstance(v, list | tuple) and 1 <= len(v) <= max_len and all(_is_number(x) for x in v)
        return None if ok else f"a list of 1-{max_len} numbers"

    return check


def any_of(*checks: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        problems = [c(v) for c in checks]
        return None if any(p is None for p in problems) else " or ".join(p for p in problems if p)

    return check


def kernel_list(v: Any) -> str | None:
    """DynUNet's per-level kernels/strides: a list of integers or of integer lists."""
    ok = isinstance(v, list | tuple) and 1 <= len(v) <= 16
    ok = ok and all((_is_int(x) and x > 0) or int_list(1, 3, 1)(x) is None for x in v)
    return None if ok else "a list of integers or of integer lists (one per level)"


NORMS = ("batch", "instance", "group", "layer", "localresponse", "syncbatch", "instance_nvfuser")
ACTS = ("relu", "prelu", "leakyrelu", "elu", "selu", "celu", "gelu", "sigmoid", "tanh", "softmax", "swish", "mish")


def layer(names: tuple[str, ...]) -> Callable[[Any], str | None]:
    """A MONAI layer-factory name, or ``[name, {option: number/bool/str}]`` (looked up in MONAI's own tables)."""

    def check(v: Any) -> str | None:
        if isinstance(v, str):
            return None if v.lower() in names else f"one of {', '.join(names)}"
        if isinstance(v, list | tuple) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], dict):
            plain = all(isinstance(k, str) and isinstance(x, int | float | bool | str) for k, x in v[1].items())
            if v[0].lower() in names and plain:
                return None
        return f"one of {', '.join(names)}, or [name, {{option: value}}]"

    return check


# ------------------------------------------------------------------ networks


@dataclass(frozen=True)
class NetworkSpec:
    """A registered network: how to build it and the arguments it accepts.

    Attributes:
        name: the registered name used in manifests.
        build: the constructor (imported by medseg, never named by a manifest).
        required: arguments that must be given.
        arguments: argument name -> type check (returns None or what the value must be).
        fixed: arguments whose value is forced (e.g. no pretrained-weight download).
    """

    name: str
    build: Callable[[], Callable[..., Any]]
    required: tuple[str, ...]
    arguments: dict[str, Callable[[Any], str | None]]
    fixed: tuple[tuple[str, Any], ...] = ()


def _monai(class_name: str) -> Callable[[], Callable[..., Any]]:
    def get() -> Callable[..., Any]:
        import monai.networks.nets as nets

        import medseg.networks  # noqa: F401  (registers medseg's FlexibleUNet backbones)

        return getattr(nets, class_name)

    return get


def _backbone(v: Any) -> str | None:
    from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE

    import medseg.networks  # noqa: F401

    names = sorted(FLEXUNET_BACKBONE.register_dict)
    return None if isinstance(v, str) and v in names else f"a registered backbone ({', '.join(names)})"


_COMMON = {"spatial_dims": integer(2, 3), "in_channels": integer(1, 64), "out_channels": integer(1, 256)}
NETWORKS: dict[str, NetworkSpec] = {
    spec.name: spec
    for spec in (
        NetworkSpec(
            "monai.UNet",
            _monai("UNet"),
            ("spatial_dims", "in_channels", "out_channels", "channels", "strides"),
            {
                **_COMMON,
                "channels": int_list(2, 10, 1),
                "strides": int_list(1, 9, 1),
                "kernel_size": any_of(integer(1, 15), int_list(1, 3, 1)),
                "up_kernel_size": any_of(integer(1, 15), int_list(1, 3, 1)),
                "num_res_units": integer(0, 16),
                "act": layer(ACTS),
                "norm": layer(NORMS),
                "dropout": number(0, 1),
                "bias": boolean,
                "adn_ordering": choice("nda", "nad", "and", "adn", "dan", "dna", "na", "an", "nd", "dn", "ad", "da"),
            },
        ),
        NetworkSpec(
            "monai.FlexibleUNet",
            _monai("FlexibleUNet"),
            ("in_channels", "out_channels", "backbone"),
            {
                **_COMMON,
                "backbone": _backbone,
                "pretrained": boolean,
                "decoder_channels": int_list(1, 10, 1),
                "norm": layer(NORMS),
                "act": layer(ACTS),
                "dropout": number(0, 1),
                "decoder_bias": boolean,
                "upsample": choice("deconv", "pixelshuffle", "nontrainable"),
                "pre_conv": choice("default"),
                "interp_mode": choice("nearest", "linear", "bilinear", "bicubic", "trilinear"),
                "is_pad": boolean,
            },
            fixed=(("pretrained", False),),
        ),
        NetworkSpec(
            "monai.DynUNet",
            _monai("DynUNet"),
            ("spatial_dims", "in_channels", "out_channels", "kernel_size", "strides", "upsample_kernel_size"),
            {
                **_COMMON,
                "kernel_size": kernel_list,
                "strides": kernel_list,
                "upsample_kernel_size": kernel_list,
                "filters": int_list(1, 16, 1),
                "dropout": any_of(number(0, 1), layer(("dropout", "alphadropout"))),
                "norm_name": layer(NORMS),
                "act_name": layer(ACTS),
                "deep_supervision": boolean,
                "deep_supr_num": integer(1, 8),
                "res_block": boolean,
                "trans_bias": boolean,
            },
            fixed=(("deep_supervision", False),),
        ),
        NetworkSpec(
            "monai.BasicUNet",
            _monai("BasicUNet"),
            ("spatial_dims", "in_channels", "out_channels"),
            {
                **_COMMON,
                "features": int_list(6, 6, 1),
                "act": layer(ACTS),
                "norm": layer(NORMS),
                "bias": boolean,
                "dropout": number(0, 1),
                "upsample": choice("deconv", "pixelshuffle", "nontrainable"),
            },
        ),
        NetworkSpec(
            "monai.SegResNet",
            _monai("SegResNet"),
            ("spatial_dims", "in_channels", "out_channels"),
            {
                **_COMMON,
                "init_filters": integer(1, 512),
                "dropout_prob": any_of(number(0, 1)),
                "act": layer(ACTS),
                "norm": layer(NORMS),
                "use_conv_final": boolean,
                "blocks_down": int_list(1, 8, 1),
                "blocks_up": int_list(1, 8, 1),
                "upsample_mode": choice("deconv", "pixelshuffle", "nontrainable"),
            },
        ),
        NetworkSpec(
            "monai.AttentionUnet",
            _monai("AttentionUnet"),
            ("spatial_dims", "in_channels", "out_channels", "channels", "strides"),
            {
                **_COMMON,
                "channels": int_list(2, 10, 1),
                "strides": int_list(1, 9, 1),
                "kernel_size": integer(1, 15),
                "up_kernel_size": integer(1, 15),
                "dropout": number(0, 1),
            },
        ),
    )
}


def check_arguments(
    where: str, arguments: dict, spec: dict[str, Callable[[Any], str | None]], required: tuple[str, ...] = ()
) -> None:
    """Check ``arguments`` against a registered argument spec.

    Raises:
        ArgumentError: an unknown or missing argument, or one of the wrong type (the message names it).
    """
    if not isinstance(arguments, dict):
        raise ArgumentError(f"{where}: arguments must be an object")
    unknown = sorted(set(arguments) - set(spec))
    if unknown:
        raise ArgumentError(f"{where}: unknown argument(s) {unknown}; accepted: {sorted(spec)}")
    missing = [k for k in required if k not in arguments]
    if missing:
        raise ArgumentError(f"{where}: missing argument(s) {missing}")
    for key, value in arguments.items():
        problem = spec[key](value)
        if problem:
            raise ArgumentError(f"{where}: argument {key!r} = {value!r} must be {problem}")


def check_network(name: str, arguments: dict) -> NetworkSpec:
    """The registered spec of network ``name`` after checking ``arguments``.

    Raises:
        ArgumentError: an unregistered name or bad arguments.
    """
    if name not in NETWORKS:
        raise ArgumentError(f"network {name!r} is not registered in medseg (registered: {', '.join(NETWORKS)})")
    spec = NETWORKS[name]
    check_arguments(f"network {name}", arguments, spec.arguments, spec.required)
    for key, value in spec.fixed:
        if key in arguments and arguments[key] != value:
            raise ArgumentError(f"network {name}: argument {key!r} must be {value!r} in a shared model")
    return spec


def build_network(name: str, arguments: dict) -> Any:
    """Construct a registered network from checked arguments (lists become tuples where MONAI expects them)."""
    spec = check_network(name, arguments)
    kwargs = {k: tuple(v) if isinstance(v, list) and k in ("norm", "act", "norm_name", "act_name") else v
              for k, v in arguments.items()}  # fmt: skip
    kwargs.update(dict(spec.fixed))
    return spec.build()(**kwargs)


# ------------------------------------------------------------------ preprocessing


@dataclass(frozen=True)
class StepSpec:
    """A registered preprocessing step: argument types and the MONAI/medseg dictionary transform it builds."""

    name: str
    arguments: dict[str, Callable[[Any], str | None]]
    required: tuple[str, ...]
    build: Callable[[dict], Any]


def _scale_intensity(p: dict) -> Any:
    from monai.transforms import ScaleIntensityd

    return ScaleIntensityd(keys="image", minv=p.get("minv", 0.0), maxv=p.get("maxv", 1.0))


def _scale_intensity_range(p: dict) -> Any:
    from monai.transforms import ScaleIntensityRanged

    return ScaleIntensityRanged(keys="image", **p)


def _scale_intensity_range_percentiles(p: dict) -> Any:
    from monai.transforms import ScaleIntensityRangePercentilesd

    return ScaleIntensityRangePercentilesd(keys="image", **p)


def _z_score(p: dict) -> Any:
    from monai.transforms import NormalizeIntensityd

    return NormalizeIntensityd(keys="image", nonzero=p.get("nonzero", False), channel_wise=p.get("channel_wise", False))


def _normalize_intensity(p: dict) -> Any:
    from monai.transforms import NormalizeIntensityd

    return NormalizeIntensityd(keys="image", **p)


def _resize(p: dict) -> Any:
    from monai.transforms import Resized

    from medseg.transforms import AntialiasedResized

    # packages made before the filter was recorded resized with MONAI's Gaussian anti-aliasing
    resized = AntialiasedResized if p.pop("anti_aliasing_filter", "gaussian") == "torch" else Resized
    return resized(keys="image", **p)


def _squeeze_slice(p: dict) -> Any:
    from medseg.transforms import SqueezeSliced

    return SqueezeSliced(keys="image")


STEPS: dict[str, StepSpec] = {
    s.name: s
    for s in (
        StepSpec("squeeze_slice", {}, (), _squeeze_slice),
        StepSpec("scale_intensity", {"minv": number(), "maxv": number()}, (), _scale_intensity),
        StepSpec(
            "scale_intensity_range",
            {"a_min": number(), "a_max": number(), "b_min": number(), "b_max": number(), "clip": boolean},
            ("a_min", "a_max", "b_min", "b_max"),
            _scale_intensity_range,
        ),
        StepSpec(
            "scale_intensity_range_percentiles",
            {
                "lower": number(0, 100),
                "upper": number(0, 100),
                "b_min": number(),
                "b_max": number(),
                "clip": boolean,
                "relative": boolean,
                "channel_wise": boolean,
            },
            ("lower", "upper", "b_min", "b_max"),
            _scale_intensity_range_percentiles,
        ),
        StepSpec("z_score", {"nonzero": boolean, "channel_wise": boolean}, (), _z_score),
        StepSpec(
            "normalize_intensity",
            {"subtrahend": number_list(), "divisor": number_list(), "channel_wise": boolean, "nonzero": boolean},
            ("subtrahend", "divisor"),
            _normalize_intensity,
        ),
        StepSpec(
            "resize",
            {
                "spatial_size": int_list(1, 3, 1),
                "mode": choice("bilinear", "nearest", "bicubic", "area", "nearest-exact"),
                "anti_aliasing": boolean,
                "anti_aliasing_filter": choice("gaussian", "torch"),
                "align_corners": boolean,
            },
            ("spatial_size",),
            _resize,
        ),
    )
}


def check_step(index: int, step: Any) -> StepSpec:
    """The registered spec of preprocessing step ``index`` after checking its parameters.

    Raises:
        ArgumentError: an unregistered step or bad parameters.
    """
    if not isinstance(step, dict) or not isinstance(step.get("name"), str):
        raise ArgumentError(f"preprocessing step {index}: must be {{'name': ..., 'params': {{...}}}}")
    name = step["name"]
    if name not in STEPS:
        raise ArgumentError(f"preprocessing step {index}: {name!r} is not registered (registered: {', '.join(STEPS)})")
    spec = STEPS[name]
    check_arguments(f"preprocessing step {index} ({name})", step.get("params", {}), spec.arguments, spec.required)
    return spec


def build_preprocessing(steps: list[dict]) -> Any:
    """The preprocessing ``Compose`` (reading excluded) of a manifest's checked steps."""
    from monai.transforms import Compose, EnsureTyped

    transforms = [check_step(i, step).build(dict(step.get("params", {}))) for i, step in enumerate(steps)]
    return Compose([*transforms, EnsureTyped(keys="image", dtype="float32")])
