"""GPU model names: one canonical slug for what people, nodes and Akash write.

Contract: pure data, no I/O. Everything here is a function of its string arguments, so the
operator (node labels), the gateway (``X-SDXL-GPU`` header, backends file) and the worker
(``--gpu-model``) agree on what "the same GPU" means.

The same card reaches us spelled many ways::

    "A100", "a100", "NVIDIA A100", "nvidia-a100"          -> a100
    "NVIDIA-A100-SXM4-80GB", "A100 80GB PCIe"             -> a100-80gb
    "RTX 3090", "NVIDIA-GeForce-RTX-3090", "rtx3090"      -> rtx-3090
    "GeForce RTX 3090 Ti"                                 -> rtx-3090-ti   (not a 3090)
    "RTX A6000", "A6000", "rtxa6000"                      -> rtx-a6000
    "NVIDIA-RTX-6000-Ada-Generation"                      -> rtx-6000-ada
    "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"                    -> a100-40gb-mig-1g.5gb

so names are parsed into a :class:`GpuName` rather than compared as strings. Parsing is
token based: lower-case the text, split on spaces, dashes, underscores and slashes, then sort
each token into one slot:

- vendor and filler words (NVIDIA, GeForce, Tesla, Quadro, Generation, Edition, GPU): dropped.
- memory size (``80GB``, ``80 GB``, ``144G``, ``80Gi``): ``memory`` as ``"80gb"``.
- memory type (``HBM3``, ``HBM2e``, ``GDDR6X``): dropped. Within a family it follows from the
  memory size and form factor, and no pool has a reason to ask for it.
- form factor (``SXM``/``SXM2``/``SXM4``/``SXM5``, ``PCIe``, ``NVL``, ``Laptop``, ``Max-Q``,
  ``Server``/``Workstation``): ``form_factor``.
- ``MIG`` and a profile (``1g.5gb``, ``1c.2g.10gb``, ``1g.10gb+me``): ``mig``, as in the
  GPU feature discovery labels ``nvidia.com/gpu.product=NVIDIA-A100-SXM4-40GB-MIG-1g.5gb``.
- ``SHARED`` (GPU feature discovery appends it under time-slicing): ``shared``.
- everything else is the family, which must look like an NVIDIA model: a data-centre part
  (``a100``, ``h100``, ``l40s``, ``a10g``, ``t4``, ``gh200``, ``b200``, ...), a GeForce/RTX part
  (``rtx``/``gtx`` [``pro``] number [``ti``/``super``/``d``/``sff``/``ada``/``blackwell``]) or a
  ``titan``. Bare Ampere workstation numbers (``A6000``, ``A4000``) are the ``RTX A`` cards.

Anything else (an empty string, ``"banana"``, ``"MI300X"``) raises ``ValueError`` naming the
input. "Quadro RTX 6000" becomes ``rtx-6000`` (the Turing card); the Ada card is always
``rtx-6000-ada``.

The slug is family, then memory, then ``mig-<profile>``. The form factor stays in the struct
but out of the slug: pools choose between memory variants (an 80GB A100 holds SDXL base and
refiner with room to spare, a 40GB one less so), while SXM and PCIe run the same model at much
the same speed, and node labels spell form factor inconsistently (``NVIDIA-H100-80GB-HBM3`` is an
SXM5 card that never says so). Note a MIG slug contains a dot (and may contain ``+``), so
callers building Kubernetes object names from slugs must sanitise them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "AKASH_GPU_LABEL_PREFIX",
    "GPU_NAME_CHARACTERS",
    "GPU_NAME_FAMILY_WORD",
    "GpuName",
    "akash_labels",
    "akash_model_name",
    "display_name",
    "gpu_matches",
    "normalize_gpu_name",
    "parse_gpu_name",
]

AKASH_GPU_LABEL_PREFIX = "akash.network/capabilities.gpu.vendor.nvidia.model."

_DROPPED_WORDS = frozenset(
    {"nvidia", "geforce", "tesla", "quadro", "corporation", "generation", "edition", "gpu", "graphics"}
)
_OTHER_VENDORS = frozenset({"amd", "radeon", "instinct", "intel", "arc", "gaudi", "habana", "apple"})

_MEMORY = re.compile(r"(\d+)(?:gb|gib|gi|g)")
_MEMORY_UNITS = frozenset({"gb", "gib", "gi"})
_MEMORY_TYPE = re.compile(r"hbm\d?e?|gddr\d+x?")
_FORM_FACTOR = re.compile(r"sxm\d?|pcie|nvl|laptop|mobile|max-q|server|workstation")
_MIG_PROFILE = re.compile(r"(?:\d+c\.)?\d+g\.\d+gb(?:\+[a-z][a-z0-9.]*)*")

# GeForce / RTX: prefix, optional "pro", model number, then suffix words.
_CONSUMER_PREFIXES = frozenset({"rtx", "gtx", "gt"})
_MODEL_NUMBER = re.compile(r"a?\d{3,4}e?")
_SUFFIXES = frozenset({"ti", "super", "d", "ada", "sff", "blackwell"})
# "rtx3090ti", "rtxa6000", "rtx4000sffada", "3090ti": Akash and some tools glue the words together.
_GLUED = re.compile(r"(rtx|gtx)?(a?\d{3,4}e?)((?:ti|super|sff|ada|blackwell|d)*)")
_GLUED_SUFFIX = re.compile(r"ti|super|sff|ada|blackwell|d")
# Data-centre and older workstation parts: a100, h100, l40s, a10g, t4, v100s, gh200, gb200, p4000.
_DATACENTER = re.compile(r"(?:gh|gb|[abhklmptv])\d{1,4}[a-z]?")
_AMPERE_WORKSTATION = re.compile(r"a\d{4}")
_TITAN_VARIANTS = frozenset({"rtx", "v", "x", "xp", "z", "black"})

# A permissive pattern for admission (sdxlpool.api.cel): every name `parse_gpu_name` accepts has
# only these characters and, lower-cased, a word (between spaces, dashes, underscores or slashes)
# that looks like a family: glued consumer numbers (3090, rtx3090ti, a6000, 4000sffada), data-centre
# parts (a100, h100, l40s, a10g, gh200) or titan. Written in the subset of regular-expression syntax
# that Python's `re` and Go's RE2 (CEL's matches()) read alike; tests/api/test_gpu_names.py checks
# that it accepts every name the parser accepts.
GPU_NAME_CHARACTERS = r"^[A-Za-z0-9 ._/+-]+$"
GPU_NAME_FAMILY_WORD = (
    r"(^|[ _/-])((rtx|gtx)?a?[0-9]{3,4}e?(ti|super|sff|ada|blackwell|d)*|(gh|gb|[abhklmptv])[0-9]{1,4}[a-z]?|titan)"
    r"([ _/-]|$)"
)

# Families NVIDIA ships with exactly one memory size, so a request naming that size matches a
# node label that leaves it out ("L40S-48GB" runs on "NVIDIA-L40S"). Families with several sizes
# (a100, h100, v100, rtx-3080, ...) are deliberately absent.
_ONLY_MEMORY: dict[str, str] = {
    "a10": "24gb",
    "a10g": "24gb",
    "a40": "48gb",
    "l4": "24gb",
    "l40": "48gb",
    "l40s": "48gb",
    "t4": "16gb",
    "h200": "141gb",
    "rtx-3090": "24gb",
    "rtx-3090-ti": "24gb",
    "rtx-4090": "24gb",
    "rtx-5090": "32gb",
    "rtx-a4000": "16gb",
    "rtx-a5000": "24gb",
    "rtx-a6000": "48gb",
    "rtx-4000-ada": "20gb",
    "rtx-4000-sff-ada": "20gb",
    "rtx-5000-ada": "32gb",
    "rtx-6000-ada": "48gb",
    "rtx-pro-6000-blackwell": "96gb",
}

_DISPLAY_WORDS = {
    "ti": "Ti",
    "super": "SUPER",
    "ada": "Ada",
    "blackwell": "Blackwell",
    "pro": "PRO",
    "sff": "SFF",
    "titan": "TITAN",
    "d": "D",
}


@dataclass(frozen=True)
class GpuName:
    """A parsed NVIDIA GPU name.

    ``family`` is the card (``"a100"``, ``"rtx-3090-ti"``, ``"rtx-6000-ada"``); ``memory`` the
    memory size when the name states it (``"80gb"``); ``form_factor`` the board type when
    stated (``"sxm4"``, ``"pcie"``, ``"nvl"``); ``mig`` a MIG profile (``"1g.5gb"``) when the
    name is a MIG slice; ``shared`` whether GPU feature discovery marked it time-sliced.
    """

    family: str
    memory: str | None = None
    form_factor: str | None = None
    mig: str | None = None
    shared: bool = False

    @classmethod
    def parse(cls, text: str) -> GpuName:
        """Same as :func:`parse_gpu_name`."""
        return parse_gpu_name(text)

    @property
    def slug(self) -> str:
        """Canonical string: family, then memory, then ``mig-<profile>``; no form factor."""
        parts = [self.family]
        if self.memory:
            parts.append(self.memory)
        if self.mig:
            parts += ["mig", self.mig]
        return "-".join(parts)

    @property
    def memory_gb(self) -> int | None:
        """Stated memory size in GB, or None."""
        return int(self.memory.removesuffix("gb")) if self.memory else None

    @property
    def known_memory(self) -> str | None:
        """Stated memory, else the only size the family comes in, else None."""
        return self.memory or _ONLY_MEMORY.get(self.family)

    @property
    def display(self) -> str:
        """Human label for UIs: ``"A100 80GB"``, ``"RTX 3090 Ti"``, ``"RTX 6000 Ada"``."""
        words = [_DISPLAY_WORDS.get(part, part.upper()) for part in self.family.split("-")]
        if self.memory:
            words.append(self.memory.upper())
        if self.mig:
            words += ["MIG", self.mig]
        return " ".join(words)

    def matches(self, other: GpuName) -> bool:
        """True when a pool entry asking for ``self`` may run on a node whose GPU is ``other``.

        The request constrains only what it states: the family always; the memory when it
        names one (a node label without memory still qualifies when the family has only one
        size); the form factor when it names one (``sxm`` covers ``sxm2``/``sxm4``/``sxm5``).
        MIG must agree exactly: a whole-GPU request never lands on a MIG slice, and a request
        for a slice only on that profile. ``shared`` is ignored: a time-sliced card is still
        that card.
        """
        if self.family != other.family or self.mig != other.mig:
            return False
        if self.memory is not None and self.memory != other.known_memory:
            return False
        return self.form_factor is None or _form_factor_covers(self.form_factor, other.form_factor)

    def __str__(self) -> str:
        return self.slug


def parse_gpu_name(text: str) -> GpuName:
    """Parse any common spelling of an NVIDIA GPU name; ``ValueError`` naming ``text`` if not one."""
    if not isinstance(text, str):
        raise ValueError(f"invalid GPU name {text!r}: expected a string")
    if not text.strip():
        raise _invalid(text, "it is empty")
    family_tokens: list[str] = []
    memory: str | None = None
    form_factors: list[str] = []
    mig: str | None = None
    shared = False

    tokens = _tokenize(text)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in _DROPPED_WORDS or _MEMORY_TYPE.fullmatch(token):
            pass
        elif token in _OTHER_VENDORS:
            raise _invalid(text, f"{token!r} is not an NVIDIA GPU")
        elif token == "shared":
            shared = True
        elif token == "mig" or _MIG_PROFILE.fullmatch(token):
            if token == "mig":
                if i + 1 >= len(tokens) or not _MIG_PROFILE.fullmatch(tokens[i + 1]):
                    raise _invalid(text, "MIG must be followed by a profile such as 1g.10gb")
                i += 1
            if mig is not None and mig != tokens[i]:
                raise _invalid(text, f"it names two MIG profiles, {mig} and {tokens[i]}")
            mig = tokens[i]
        elif match := _MEMORY.fullmatch(token):
            size = f"{int(match[1])}gb"
            if memory is not None and memory != size:
                raise _invalid(text, f"it names two memory sizes, {memory} and {size}")
            memory = size
        elif _FORM_FACTOR.fullmatch(token):
            if token not in form_factors:
                form_factors.append(token)
        else:
            family_tokens.append(token)
        i += 1

    return GpuName(
        family=_parse_family(text, family_tokens),
        memory=memory,
        form_factor="-".join(form_factors) or None,
        mig=mig,
        shared=shared,
    )


def normalize_gpu_name(name: str) -> str:
    """Canonical slug of ``name``: ``"NVIDIA-A100-SXM4-80GB"`` -> ``"a100-80gb"``."""
    return parse_gpu_name(name).slug


def gpu_matches(requested: str, node_label: str) -> bool:
    """True when a pool entry asking for ``requested`` may run on a node labelled ``node_label``.

    ``requested`` comes from a pool spec and must parse (``ValueError`` otherwise); a node label
    that is not a recognisable NVIDIA name simply does not match, since nodes carry whatever
    their owners wrote.
    """
    wanted = parse_gpu_name(requested)
    try:
        offered = parse_gpu_name(node_label)
    except ValueError:
        return False
    return wanted.matches(offered)


def display_name(name: str) -> str:
    """Human label for a GPU name or slug: ``"a100-80gb"`` -> ``"A100 80GB"``."""
    return parse_gpu_name(name).display


def akash_model_name(name: str) -> str:
    """Model token Akash uses for ``name``: the family without dashes.

    Akash's GPU database (akash-network/provider-configs ``devices/pcie/gpus.json``) names
    cards ``a100``, ``h100``, ``l40s``, ``t4``, ``rtx3090``, ``rtx3090ti``, ``rtx4090``,
    ``rtxa6000``, ``rtx4000sffada``: lower case, words glued together. Memory and interface are
    not part of the model token; see :func:`akash_labels`.
    """
    return parse_gpu_name(name).family.replace("-", "")


def akash_labels(name: str) -> dict[str, str]:
    """Node labels an Akash provider puts on a node with this GPU, each with value ``"true"``.

    Keys, for ``a100-80gb`` on an SXM board::

        akash.network/capabilities.gpu.vendor.nvidia.model.a100
        akash.network/capabilities.gpu.vendor.nvidia.model.a100.ram.80Gi
        akash.network/capabilities.gpu.vendor.nvidia.model.a100.interface.sxm

    The ``ram`` key appears only when ``name`` states a memory size and the ``interface`` key only
    when it states PCIe or SXM (Akash folds sxm2/sxm4/sxm5 into ``sxm``), so a placement built
    from these keys never asks for more than the pool entry did. Values: hand-labelled nodes
    (the provider docs' ``kubectl label node ... model.a4000=true``) carry ``"true"``, but the
    provider's inventory operator writes the number of such GPUs (``"1"``, ``"2"``); placement
    should therefore test the keys with a node-affinity ``Exists`` rather than a nodeSelector
    equality. Akash does not label MIG slices, so a MIG name raises ``ValueError``.
    """
    gpu = parse_gpu_name(name)
    if gpu.mig:
        raise ValueError(f"invalid Akash GPU {name!r}: Akash providers do not label MIG slices ({gpu.mig})")
    key = AKASH_GPU_LABEL_PREFIX + akash_model_name(name)
    labels = {key: "true"}
    if gpu.memory_gb is not None:
        labels[f"{key}.ram.{gpu.memory_gb}Gi"] = "true"
    if gpu.form_factor == "pcie":
        labels[f"{key}.interface.pcie"] = "true"
    elif gpu.form_factor and gpu.form_factor.startswith("sxm"):
        labels[f"{key}.interface.sxm"] = "true"
    return labels


def _tokenize(text: str) -> list[str]:
    """Lower-case words of ``text``, with glued and split spellings brought to one form."""
    raw = [token for token in re.split(r"[\s_\-/]+", text.strip().lower()) if token]
    tokens: list[str] = []
    for token in raw:
        previous = tokens[-1] if tokens else None
        if token == "q" and previous == "max":
            tokens[-1] = "max-q"
        elif token in _MEMORY_UNITS and previous is not None and previous.isdigit():
            tokens[-1] = previous + "gb"
        else:
            tokens += _unglue(token)
    return tokens


def _unglue(token: str) -> list[str]:
    """``"rtx3090ti"`` -> ``["rtx", "3090", "ti"]``; tokens that are not glued come back alone."""
    match = _GLUED.fullmatch(token)
    if match is None or not (match[1] or match[3]):
        return [token]
    parts = [match[1]] if match[1] else []
    parts.append(match[2])
    parts += _GLUED_SUFFIX.findall(match[3])
    return parts


def _parse_family(text: str, tokens: list[str]) -> str:
    """The family slug from the words left once vendor, memory, form factor and MIG are taken."""
    if not tokens:
        raise _invalid(text, "it names no GPU model")
    head = tokens[0]
    if _AMPERE_WORKSTATION.fullmatch(head):
        tokens, head = ["rtx", *tokens], "rtx"

    if head in _CONSUMER_PREFIXES:
        parts, rest = [head], tokens[1:]
        if head == "rtx" and rest and rest[0] == "pro":
            parts.append("pro")
            rest = rest[1:]
        if not rest or not _MODEL_NUMBER.fullmatch(rest[0]):
            raise _invalid(text, f"expected a model number after {' '.join(parts).upper()}")
        parts.append(rest[0])
        for token in rest[1:]:
            if token not in _SUFFIXES:
                raise _invalid(text, f"unexpected word {token!r} after {' '.join(parts).upper()}")
            if token not in parts:
                parts.append(token)
        return "-".join(parts)

    if head == "titan":
        if len(tokens) == 2 and tokens[1] in _TITAN_VARIANTS:
            return f"titan-{tokens[1]}"
        raise _invalid(text, "expected TITAN RTX, V, X, Xp, Z or Black")

    if _DATACENTER.fullmatch(head):
        if len(tokens) > 1:
            raise _invalid(text, f"unexpected word {tokens[1]!r} after {head.upper()}")
        return head

    raise _invalid(text, f"{head!r} is not a known NVIDIA GPU model")


def _form_factor_covers(requested: str, offered: str | None) -> bool:
    """``sxm`` covers every SXM generation; other form factors must be equal."""
    if offered is None:
        return False
    return requested == offered or (requested == "sxm" and offered.startswith("sxm"))


def _invalid(text: str, reason: str) -> ValueError:
    return ValueError(f"invalid GPU name {text!r}: {reason}")
