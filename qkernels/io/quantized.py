"""The ``data/quantized/`` text formats (SPEC section 8): what C test benches read.

One number a line, plain ASCII. Files (N vectors of C channels; NNN is the vector index, 3 digits):

============================== ==============================================================
``global_params.txt``          ``# hidden_dim, num_vectors, global_s, global_zp``, then C, N,
                               S (``%.10f``), ZP
``alpha_factors.txt``          a comment, C, then one signed alpha a line (seed convention,
                               alpha <= 0: the step of channel c is ``S * 2^alpha[c]``)
``vector_NNN.txt``             a comment, C, one uint8 a line
``raw_input_vectors/raw_vec_NNN.txt``  C, one float a line (``%.8f``)
``layernorm_weights.txt``      C, then C gammas and C betas (``%.8f``)
``gamma_quantized.txt``,       two comment lines, C, scale (``%.10f``), zero point, C int8 values
``beta_quantized.txt``
``golden_ref_vecNNN.txt``      a comment, ``Global S:``, ``Global ZP:``, ``ORIGINAL Mean:``,
                               ``ORIGINAL Variance:``, ``Reconstructed Mean:``,
                               ``Reconstructed Variance:``, ``Output:``, then C floats (``%.6f``)
``golden_int_<m>_vecNNN.txt``  a comment, C, one int8 a line: the exact output bits of the
                               integer LayerNorm method <m> (``exact``, ``sole``, ...)
``layernorm_int_params.txt``   a comment, then ``key value`` lines: eps, out_scale (``%.9g``,
                               round-trips float32), out_zero_point, K, sole_rounding, methods
============================== ==============================================================

Every write is atomic (temp file, then rename), and a rewrite removes the vector files of a
previous run that had more vectors.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._atomic import atomic_write_text, clean_stale_temps

PathLike = Union[str, "os.PathLike[str]"]

GLOBAL_PARAMS = "global_params.txt"
ALPHA_FACTORS = "alpha_factors.txt"
LAYERNORM_WEIGHTS = "layernorm_weights.txt"
GAMMA_QUANTIZED = "gamma_quantized.txt"
BETA_QUANTIZED = "beta_quantized.txt"
LAYERNORM_INT_PARAMS = "layernorm_int_params.txt"
RAW_DIR = "raw_input_vectors"


class FormatError(ValueError):
    """A file does not follow the SPEC section 8 format (the message names file and line)."""


# ---------------------------------------------------------------------------------------------
# Low-level line readers
# ---------------------------------------------------------------------------------------------
class _Lines:
    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise FormatError(f"{self.path}: file not found") from None
        except IsADirectoryError:
            raise FormatError(f"{self.path}: a folder, not a file") from None
        try:
            self.lines = raw.decode("ascii").splitlines()
        except UnicodeDecodeError as exc:
            line = raw[:exc.start].count(b"\n") + 1
            raise FormatError(f"{self.path}:{line}: not an ASCII text file (byte "
                              f"0x{raw[exc.start]:02x})") from None
        self.i = 0

    def fail(self, what: str) -> FormatError:
        return FormatError(f"{self.path}:{self.i}: {what}")

    def next(self) -> str:
        if self.i >= len(self.lines):
            self.i += 1
            raise self.fail("unexpected end of file")
        line = self.lines[self.i].strip()
        self.i += 1
        return line

    def comment(self) -> str:
        line = self.next()
        if not line.startswith("#"):
            raise self.fail(f"expected a '#' comment line, got {line!r}")
        return line

    def int(self, lo: Optional[int] = None, hi: Optional[int] = None) -> int:
        return self.integer(self.next(), lo, hi)

    def float(self, f32: bool = False, positive: bool = False) -> float:
        """A finite number (finite as float32 too with ``f32``; > 0 with ``positive``)."""
        return self.number(self.next(), f32, positive)

    def number(self, text: str, f32: bool = False, positive: bool = False,
               what: str = "a number") -> float:
        try:
            v = float(text)
        except ValueError:
            raise self.fail(f"expected {what}, got {text!r}") from None
        if not np.isfinite(v):
            raise self.fail(f"{text!r} is not finite")
        if f32:
            with np.errstate(over="ignore"):
                if not np.isfinite(np.float32(v)):
                    raise self.fail(f"{text!r} overflows float32")
        if positive and not (np.float32(v) > 0 if f32 else v > 0):
            raise self.fail(f"{text!r} must be > 0" + (" (as float32)" if f32 else ""))
        return v

    def integer(self, text: str, lo: Optional[int] = None, hi: Optional[int] = None,
                what: str = "an integer") -> int:
        try:
            v = int(text)
        except ValueError:
            raise self.fail(f"expected {what}, got {text!r}") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.fail(f"{v} is outside [{lo}, {hi}]")
        return v

    def labelled(self, label: str) -> str:
        line = self.next()
        if not line.startswith(label):
            raise self.fail(f"expected {label!r}, got {line!r}")
        return line[len(label):].strip()

    def end(self) -> None:
        rest = [ln for ln in self.lines[self.i:] if ln.strip()]
        if rest:
            self.i += 1
            raise self.fail(f"unexpected extra content {rest[0]!r}")


def _ints(lines: _Lines, n: int, lo: int, hi: int) -> np.ndarray:
    return np.array([lines.int(lo, hi) for _ in range(n)], np.int64)


def _floats(lines: _Lines, n: int) -> np.ndarray:
    """n float32 values (finite as float32: a C bench reads them into float)."""
    return np.array([lines.float(f32=True) for _ in range(n)], np.float64)


def _join(lines: Sequence[str]) -> str:
    return "\n".join(lines) + "\n"


def snap_f8(x: np.ndarray) -> np.ndarray:
    """float32 values as they read back from a ``%.8f`` file (what C test benches see)."""
    a = np.asarray(x, np.float32)
    return np.array([float("%.8f" % v) for v in a.reshape(-1)], np.float64).astype(
        np.float32).reshape(a.shape)


def snap_f10(v: float) -> float:
    """A float32 value as it reads back from a ``%.10f`` file, rounded to float32."""
    return float(np.float32(float("%.10f" % float(v))))


# ---------------------------------------------------------------------------------------------
# Writers and readers, one per file kind
# ---------------------------------------------------------------------------------------------
def format_global_params(hidden_dim: int, num_vectors: int, S: float, zp: int) -> str:
    return _join(["# hidden_dim, num_vectors, global_s, global_zp", str(int(hidden_dim)),
                  str(int(num_vectors)), "%.10f" % float(S), str(int(zp))])


def read_global_params(path: PathLike) -> Tuple[int, int, float, int]:
    """``(hidden_dim, num_vectors, S, zp)``; S is rounded to float32 as the kernels use it."""
    r = _Lines(path)
    r.comment()
    # every vector has a file of its own: a folder of 0 vectors is not one this format describes
    c, n, s, zp = r.int(1), r.int(1), r.float(f32=True, positive=True), r.int(0, 255)
    r.end()
    return c, n, float(np.float32(s)), zp


def format_alpha_factors(alpha_seed: np.ndarray) -> str:
    a = np.asarray(alpha_seed)
    return _join(["# PTF alpha factors, seed convention (alpha <= 0): step of channel c is "
                  "S * 2^alpha[c]", str(a.size)] + [str(int(v)) for v in a])


def _read_counted_ints(path: PathLike, lo: int, hi: int, dtype: Any) -> np.ndarray:
    """A comment line, a count, then that many integers in [lo, hi] (the seed's list files)."""
    r = _Lines(path)
    r.comment()
    n = r.int(1)
    v = _ints(r, n, lo, hi).astype(dtype)
    r.end()
    return v


def read_alpha_factors(path: PathLike) -> np.ndarray:
    return _read_counted_ints(path, -7, 0, np.int32)


def format_vector(q: np.ndarray, index: int) -> str:
    v = np.asarray(q).reshape(-1)
    return _join([f"# quantized input vector {index:03d} (uint8, PTF)", str(v.size)]
                 + [str(int(x)) for x in v])


def read_vector(path: PathLike) -> np.ndarray:
    r = _Lines(path)
    r.comment()
    n = r.int(1)
    v = _ints(r, n, 0, 255).astype(np.uint8)
    r.end()
    return v


def format_raw_vector(x: np.ndarray) -> str:
    v = np.asarray(x, np.float32).reshape(-1)
    return _join([str(v.size)] + ["%.8f" % float(f) for f in v])


def read_raw_vector(path: PathLike) -> np.ndarray:
    r = _Lines(path)
    n = r.int(1)
    v = _floats(r, n).astype(np.float32)
    r.end()
    return v


def format_layernorm_weights(gamma: np.ndarray, beta: np.ndarray) -> str:
    g = np.asarray(gamma, np.float32).reshape(-1)
    b = np.asarray(beta, np.float32).reshape(-1)
    if g.shape != b.shape:
        raise ValueError(f"gamma {g.shape} and beta {b.shape} differ in length")
    return _join([str(g.size)] + ["%.8f" % float(v) for v in g] + ["%.8f" % float(v) for v in b])


def read_layernorm_weights(path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    r = _Lines(path)
    n = r.int(1)
    g = _floats(r, n).astype(np.float32)
    b = _floats(r, n).astype(np.float32)
    r.end()
    return g, b


def format_quantized_param(name: str, values: np.ndarray, scale: float, zp: int) -> str:
    v = np.asarray(values).reshape(-1)
    return _join([f"# quantized LayerNorm {name} (int8, symmetric): {name} ~= scale * (q - "
                  f"zero_point)", "# count, scale, zero_point, then one value a line",
                  str(v.size), "%.10f" % float(scale), str(int(zp))] + [str(int(x)) for x in v])


def read_quantized_param(path: PathLike) -> Tuple[np.ndarray, float, int]:
    """``(values int8, scale, zero_point)``."""
    r = _Lines(path)
    r.comment()
    r.comment()
    n = r.int(1)
    s, zp = r.float(f32=True, positive=True), r.int(-128, 127)
    v = _ints(r, n, -128, 127).astype(np.int8)
    r.end()
    return v, s, zp


@dataclass
class GoldenRef:
    """One ``golden_ref_vecNNN.txt``: the float LayerNorm output of a vector and its statistics."""

    S: float
    zp: int
    orig_mean: float
    orig_var: float
    rec_mean: float
    rec_var: float
    output: np.ndarray


def format_golden_ref(index: int, g: GoldenRef) -> str:
    return _join([f"# golden LayerNorm output, vector {index:03d} (float LayerNorm of the "
                  f"original input)",
                  "Global S: %.10f" % g.S, f"Global ZP: {int(g.zp)}",
                  "ORIGINAL Mean: %.8f" % g.orig_mean, "ORIGINAL Variance: %.8f" % g.orig_var,
                  "Reconstructed Mean: %.8f" % g.rec_mean,
                  "Reconstructed Variance: %.8f" % g.rec_var, "Output:"]
                 + ["%.6f" % float(v) for v in np.asarray(g.output).reshape(-1)])


def read_golden_ref(path: PathLike, channels: Optional[int] = None) -> GoldenRef:
    r = _Lines(path)
    r.comment()

    def num(label: str, **kw) -> float:
        return r.number(r.labelled(label), what=f"a number after {label!r}", **kw)

    S = num("Global S:", f32=True, positive=True)
    zp = r.integer(r.labelled("Global ZP:"), 0, 255, what="an integer after 'Global ZP:'")
    om, ov = num("ORIGINAL Mean:"), num("ORIGINAL Variance:")
    rm, rv = num("Reconstructed Mean:"), num("Reconstructed Variance:")
    r.labelled("Output:")
    vals = []
    while any(ln.strip() for ln in r.lines[r.i:]):
        vals.append(r.float(f32=True))
    if channels is not None and len(vals) != channels:
        raise FormatError(f"{path}:{r.i}: {len(vals)} output values, expected {channels}")
    return GoldenRef(S, zp, om, ov, rm, rv, np.array(vals, np.float64))


def format_golden_int(index: int, method: str, y: np.ndarray, out_scale: float,
                      out_zp: int) -> str:
    v = np.asarray(y).reshape(-1)
    return _join([f"# integer LayerNorm output, vector {index:03d}, method {method} (int8; "
                  f"value = {out_scale:.9g} * (y - {int(out_zp)}))", str(v.size)]
                 + [str(int(x)) for x in v])


def read_golden_int(path: PathLike) -> np.ndarray:
    return _read_counted_ints(path, -128, 127, np.int8)


def format_layernorm_int_params(cfg: Dict[str, object]) -> str:
    lines = ["# integer LayerNorm configuration (qkernels): key value"]
    for k in ("eps", "out_scale", "out_zero_point", "K", "sole_rounding", "methods"):
        v = cfg[k]
        if k in ("eps", "out_scale"):
            v = "%.9g" % float(v)  # type: ignore[arg-type]
        elif k == "methods":
            v = ",".join(v)  # type: ignore[arg-type]
        lines.append(f"{k} {v}")
    return _join(lines)


_INT_PARAM_KEYS = ("eps", "out_scale", "out_zero_point", "K", "sole_rounding", "methods")


def read_layernorm_int_params(path: PathLike) -> Dict[str, object]:
    """The ``key value`` lines, each checked (a bad value names its line): eps finite and
    >= 0, out_scale finite and > 0 as float32, out_zero_point in [-128, 127], K in [0, 7],
    sole_rounding ``round`` or ``truncate``, methods a comma-separated list of names."""
    r = _Lines(path)
    r.comment()
    out: Dict[str, object] = {}
    lines: Dict[str, int] = {}
    while any(ln.strip() for ln in r.lines[r.i:]):
        ln = r.next()
        if not ln:
            continue
        parts = ln.split()
        if len(parts) != 2:
            raise r.fail(f"bad line {ln!r} (expected 'key value')")
        k, v = parts
        if k not in _INT_PARAM_KEYS:
            raise r.fail(f"unknown key {k!r} (expected one of {', '.join(_INT_PARAM_KEYS)})")
        if k in lines:
            raise r.fail(f"key {k!r} repeated (first on line {lines[k]})")
        lines[k] = r.i
        if k == "eps":
            e = r.number(v, what="eps, a number")
            if e < 0:
                raise r.fail(f"eps {v!r} must be >= 0")
            out[k] = e
        elif k == "out_scale":
            out[k] = float(np.float32(r.number(v, f32=True, positive=True, what="out_scale")))
        elif k == "out_zero_point":
            out[k] = r.integer(v, -128, 127, what="out_zero_point, an integer")
        elif k == "K":
            out[k] = r.integer(v, 0, 7, what="K, an integer")
        elif k == "sole_rounding":
            if v not in ("round", "truncate"):
                raise r.fail(f"sole_rounding {v!r} must be 'round' or 'truncate'")
            out[k] = v
        else:
            names = v.split(",")
            if not all(re.fullmatch(r"[a-z_]+", m) for m in names):
                raise r.fail(f"methods {v!r} must be comma-separated names")
            out[k] = names
    missing = [k for k in _INT_PARAM_KEYS if k not in out]
    if missing:
        raise FormatError(f"{path}:{r.i}: missing key {missing[0]!r}")
    return out


def key_line(path: PathLike, key: str) -> int:
    """The 1-based line of ``key value`` in a key-value file (0 when absent), for messages."""
    for i, ln in enumerate(Path(path).read_text(encoding="ascii", errors="replace").splitlines()):
        if ln.split()[:1] == [key]:
            return i + 1
    return 0


def format_layernorm_int(tag: str, ln) -> str:
    """``layernorm_int_<tag>.txt``: the prepared integers of one method, one number a line.

    Lines: two comments, C, shift F, eps term E, gamma multiplier, beta multiplier, then C
    gamma integers, C beta integers and the 256 inverse-square-root table entries (zeros for
    ``exact``). These are exactly the fields of C's ``qk_layernorm_params``.
    """
    vals = ([ln.channels, ln.shift, ln.eps_term, ln.gamma_multiplier, ln.beta_multiplier]
            + [int(v) for v in ln.gamma_int] + [int(v) for v in ln.beta_int]
            + [int(v) for v in ln.lut])
    return _join([f"# prepared integer LayerNorm parameters, method {tag} (qk_layernorm_params)",
                  "# channels, shift, eps_term, gamma_multiplier, beta_multiplier, then gamma[C], "
                  "beta[C], inv_sqrt_lut[256]"] + [str(v) for v in vals])


def read_layernorm_int(path: PathLike) -> Dict[str, object]:
    """Read ``layernorm_int_<tag>.txt`` back: a dict of the integer fields and arrays."""
    r = _Lines(path)
    r.comment()
    r.comment()
    c = r.int(1)
    out: Dict[str, object] = {"channels": c, "shift": r.int(16, 56), "eps_term": r.int(0),
                              "gamma_multiplier": r.int(0), "beta_multiplier": r.int(0)}
    out["gamma"] = _ints(r, c, -(1 << 30), 1 << 30)
    out["beta"] = _ints(r, c, -(1 << 62), 1 << 62)
    out["lut"] = _ints(r, 256, 0, 1 << 16)
    r.end()
    return out


# ---------------------------------------------------------------------------------------------
# The whole folder
# ---------------------------------------------------------------------------------------------
@dataclass
class QuantizedData:
    """Everything in a ``data/quantized/`` folder.

    ``vectors`` (N, C) uint8, ``raw`` (N, C) float32, ``golden_ref`` one :class:`GoldenRef` per
    vector, ``golden_int`` method -> (N, C) int8, ``S``/``zero_point``/``alpha_seed`` in the
    seed convention (:meth:`ptf_params` converts), ``config`` the integer LayerNorm settings.
    """

    S: float
    zero_point: int
    alpha_seed: np.ndarray
    vectors: np.ndarray
    raw: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    gamma_q: Tuple[np.ndarray, float, int]
    beta_q: Tuple[np.ndarray, float, int]
    golden_ref: List[GoldenRef]
    golden_int: Dict[str, np.ndarray]
    config: Dict[str, object] = field(default_factory=dict)

    @property
    def hidden_dim(self) -> int:
        return int(self.alpha_seed.shape[0])

    @property
    def num_vectors(self) -> int:
        return int(self.vectors.shape[0])

    def ptf_params(self):
        """The :class:`qkernels.PTFParams` of these files (seed convention converted)."""
        from ..ptf import PTFParams
        K = int(self.config.get("K", 3)) if self.config else None
        return PTFParams.from_seed(self.S, self.zero_point, self.alpha_seed, K=K)


def _vector_files(folder: Path, pattern: str) -> List[Tuple[int, Path]]:
    rx = re.compile(pattern)
    out = []
    if folder.is_dir():
        for p in folder.iterdir():
            m = rx.fullmatch(p.name)
            if m:
                out.append((int(m.group(1)), p))
    return sorted(out)


_PATTERNS = [("", r"vector_(\d+)\.txt"), ("", r"golden_ref_vec(\d+)\.txt"),
             ("", r"golden_int_[a-z_]+_vec(\d+)\.txt"), (RAW_DIR, r"raw_vec_(\d+)\.txt")]


def write_quantized_dir(out_dir: PathLike, data: QuantizedData,
                        on_vector: Optional[Callable[[int], None]] = None) -> List[Path]:
    """Write every file of ``data`` into ``out_dir`` (atomically, file by file).

    Returns the paths written. Vector files of an earlier run beyond N are removed.
    ``on_vector(i)`` is called after the files of vector i are written (progress bars).

    Example:
        >>> # see qkernels.collect.write_outputs for the full pipeline
    """
    d = Path(out_dir)
    for sub in (d, d / RAW_DIR):
        try:
            sub.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise type(exc)(exc.errno, exc.strerror, str(sub)) from None
        clean_stale_temps(sub)   # leftovers of a run that was killed mid-write
    n, c = data.vectors.shape
    written = []

    def put(name: str, text: str) -> None:
        p = d / name
        atomic_write_text(p, text)
        written.append(p)

    put(GLOBAL_PARAMS, format_global_params(c, n, data.S, data.zero_point))
    put(ALPHA_FACTORS, format_alpha_factors(data.alpha_seed))
    put(LAYERNORM_WEIGHTS, format_layernorm_weights(data.gamma, data.beta))
    put(GAMMA_QUANTIZED, format_quantized_param("gamma", *data.gamma_q))
    put(BETA_QUANTIZED, format_quantized_param("beta", *data.beta_q))
    if data.config:
        put(LAYERNORM_INT_PARAMS, format_layernorm_int_params(data.config))
    out_scale = float(data.config.get("out_scale", 1.0)) if data.config else 1.0
    out_zp = int(data.config.get("out_zero_point", 0)) if data.config else 0  # type: ignore
    for i in range(n):
        put(f"vector_{i:03d}.txt", format_vector(data.vectors[i], i))
        put(f"{RAW_DIR}/raw_vec_{i:03d}.txt", format_raw_vector(data.raw[i]))
        put(f"golden_ref_vec{i:03d}.txt", format_golden_ref(i, data.golden_ref[i]))
        for m, y in data.golden_int.items():
            put(f"golden_int_{m}_vec{i:03d}.txt", format_golden_int(i, m, y[i], out_scale, out_zp))
        if on_vector is not None:
            on_vector(i)
    keep = set(written)
    for sub, pat in _PATTERNS:
        for _, p in _vector_files(d / sub if sub else d, pat):
            if p not in keep:
                p.unlink()
    return written


def read_quantized_dir(in_dir: PathLike,
                       known_methods: Optional[Sequence[str]] = None) -> QuantizedData:
    """Read a ``data/quantized/`` folder back (the inverse of :func:`write_quantized_dir`).

    Checks counts and ranges line by line; raises :class:`FormatError` naming the file and line.
    With ``known_methods``, every method named in ``layernorm_int_params.txt`` must be one of
    them.
    """
    d = Path(in_dir)
    if not d.is_dir():
        raise FormatError(f"{d}: not a folder")
    c, n, S, zp = read_global_params(d / GLOBAL_PARAMS)
    alpha = read_alpha_factors(d / ALPHA_FACTORS)
    if alpha.size != c:
        raise FormatError(f"{d / ALPHA_FACTORS}:2: {alpha.size} alphas, hidden_dim is {c}")
    gamma, beta = read_layernorm_weights(d / LAYERNORM_WEIGHTS)
    if gamma.size != c:
        raise FormatError(f"{d / LAYERNORM_WEIGHTS}:1: {gamma.size} weights, hidden_dim is {c}")
    gq = read_quantized_param(d / GAMMA_QUANTIZED)
    bq = read_quantized_param(d / BETA_QUANTIZED)
    cfg = read_layernorm_int_params(d / LAYERNORM_INT_PARAMS) \
        if (d / LAYERNORM_INT_PARAMS).exists() else {}
    vecs = np.zeros((n, c), np.uint8)
    raw = np.zeros((n, c), np.float32)
    refs = []
    methods = list(cfg.get("methods", [])) if cfg else []  # type: ignore[arg-type]
    for m in methods:
        if known_methods is not None and m not in known_methods:
            f = d / LAYERNORM_INT_PARAMS
            raise FormatError(f"{f}:{key_line(f, 'methods')}: unknown method {m!r} (known: "
                              f"{', '.join(known_methods)})")
    gint = {m: np.zeros((n, c), np.int8) for m in methods}
    for i in range(n):
        for name, arr, reader in ((f"vector_{i:03d}.txt", vecs, read_vector),
                                  (f"{RAW_DIR}/raw_vec_{i:03d}.txt", raw, read_raw_vector)):
            v = reader(d / name)
            if v.size != c:
                raise FormatError(f"{d / name}:{1 if name.startswith(RAW_DIR) else 2}: "
                                  f"{v.size} values, hidden_dim is {c}")
            arr[i] = v
        refs.append(read_golden_ref(d / f"golden_ref_vec{i:03d}.txt", c))
        for m in methods:
            v = read_golden_int(d / f"golden_int_{m}_vec{i:03d}.txt")
            if v.size != c:
                raise FormatError(f"{d}/golden_int_{m}_vec{i:03d}.txt:2: {v.size} values, "
                                  f"hidden_dim is {c}")
            gint[m][i] = v
    return QuantizedData(S, zp, alpha, vecs, raw, gamma, beta, gq, bq, refs, gint, cfg)
