"""CEL rules (``x-kubernetes-validations``) the Kubernetes API server checks when a pool is applied.

Contract: pure data. :mod:`sdxlpool.api.spec` attaches each rule to the model or field it is
about, beside the pydantic validator that checks the same thing, and :mod:`sdxlpool.operator.crd`
copies them into the CRD. So ``kubectl apply`` of a bad pool fails at once, with a message that
names the field and the fix, instead of ``created`` followed by a ``Degraded`` condition.

The pydantic model stays the source of truth: ``tests/api/test_cel_rules.py`` holds a table of
bad specs, each rejected by pydantic and (``tests/apiserver``) by a real API server with the
message given here. What CEL cannot check, the operator still does and reports as ``Degraded``:

- GPU names. The rule here is a *pattern* (some word of the name looks like an NVIDIA model:
  ``a100``, ``h100``, ``rtx``-``4090``, ``3090ti``, ``l40s``, ``titan``), not an enum of known
  cards: node labels spell one card many ways (``NVIDIA-A100-SXM4-80GB-MIG-1g.5gb``), new cards
  arrive between releases, and :func:`sdxlpool.api.gpu.parse_gpu_name` accepts any NVIDIA-shaped
  name. The pattern rejects what is plainly not a GPU (``banana``, ``MI300X``, a typo that drops
  the number); the parser, in the operator, rejects the rest (``Radeon 7900``).
- Two entries whose names differ but normalise to the same GPU (``A100`` and
  ``NVIDIA-A100``): the rule here compares names ignoring case only.
- Fine-tune files that overlap on a volume, and placements a label scheme cannot express.

Rule costs: the API server refuses a CRD whose rules could cost too much on the largest object
the schema allows, so the lists and strings the rules walk have bounds (``maxItems``,
``maxLength``) in the spec.
"""

from __future__ import annotations

from typing import Any, Literal

from sdxlpool.api.gpu import GPU_NAME_CHARACTERS, GPU_NAME_FAMILY_WORD

__all__ = [
    "AUTOSCALING_MIN_WITHIN_MAX",
    "CACHE_AT_MOST_ONE",
    "DEFAULT_PIXELS_WITHIN_LIMITS",
    "DEFAULT_STEPS_WITHIN_LIMITS",
    "FINE_TUNE_EXACTLY_ONE",
    "GPU_ENTRIES_UNIQUE",
    "GPU_NAME_LOOKS_NVIDIA",
    "MODEL_SOURCE_EXACTLY_ONE",
    "REPLICAS_WITHIN_AUTOSCALING",
    "TEMPLATE_IFF_CUSTOM",
    "TOLERATION_EXISTS_NO_VALUE",
    "TOLERATION_KEYLESS_EXISTS",
    "TOLERATION_SECONDS_NO_EXECUTE",
    "Rule",
    "validations",
]

Reason = Literal["FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"]


def Rule(rule: str, *, message: str | None = None, message_expression: str | None = None,  # noqa: N802
         field_path: str | None = None, reason: Reason | None = None) -> dict[str, Any]:
    """One ``x-kubernetes-validations`` entry. ``message`` is shown as is; ``message_expression``
    (a CEL string expression) can quote the values; ``field_path`` points the error at a child."""
    entry: dict[str, Any] = {"rule": rule}
    if message is not None:
        entry["message"] = message
    if message_expression is not None:
        entry["messageExpression"] = message_expression
    if field_path is not None:
        entry["fieldPath"] = field_path
    if reason is not None:
        entry["reason"] = reason
    return entry


def validations(*rules: dict[str, Any]) -> dict[str, Any]:
    """``json_schema_extra`` for a pydantic model or field: these rules in its CRD schema."""
    return {"x-kubernetes-validations": list(rules)}


# Messages are fixed text where they would quote numbers: the API server estimates the cost of a
# messageExpression from the largest values the schema allows, and string(int) concatenations
# exceed its budget. The field path and the value's type come with the server's error anyway.

# spec.gpus: SDXLPoolSpec._one_entry_per_gpu (which also catches names that normalise alike).
GPU_ENTRIES_UNIQUE = Rule(
    "self.all(g, self.exists_one(h, h.model.lowerAscii() == g.model.lowerAscii()))",
    message="a GPU model is listed more than once (names compared ignoring case): give each GPU model one "
            "entry, adding their replicas up",
    # No reason FieldValueDuplicate: the API server then prints "Duplicate value" alone, not the message.
)

# spec.gpus[].model: GpuEntry._known_gpu (sdxlpool.api.gpu.parse_gpu_name) -- see the docstring.
GPU_NAME_LOOKS_NVIDIA = Rule(
    f"self.matches('{GPU_NAME_CHARACTERS}') && self.lowerAscii().matches('{GPU_NAME_FAMILY_WORD}')",
    message_expression=("self + ' is not an NVIDIA GPU model name: write it as on the card or the "
                        "node label, e.g. A100, H100 80GB, RTX 4090, NVIDIA-A100-SXM4-80GB'"),
)

# spec.gpus[]: SDXLPoolSpec._replicas_within_autoscaling.
AUTOSCALING_MIN_WITHIN_MAX = Rule(
    "self.minReplicas <= self.maxReplicas",
    message="minReplicas exceeds maxReplicas: raise maxReplicas or lower minReplicas",
    field_path=".minReplicas",
)
REPLICAS_WITHIN_AUTOSCALING = Rule(
    "!has(self.autoscaling) || self.autoscaling.minReplicas > self.autoscaling.maxReplicas || "
    "(self.autoscaling.minReplicas <= self.replicas && self.replicas <= self.autoscaling.maxReplicas)",
    message="replicas must lie within autoscaling.minReplicas..maxReplicas: it is the starting size",
    field_path=".replicas",
)

# spec: SDXLPoolSpec._defaults_within_limits.
DEFAULT_STEPS_WITHIN_LIMITS = Rule(
    "self.defaults.steps <= self.limits.maxSteps",
    message="defaults.steps exceeds limits.maxSteps: lower defaults.steps or raise limits.maxSteps",
    field_path=".defaults.steps",
)
DEFAULT_PIXELS_WITHIN_LIMITS = Rule(
    "self.defaults.width * self.defaults.height <= self.limits.maxPixels",
    message="defaults.width x defaults.height exceeds limits.maxPixels: make the default image smaller or "
            "raise limits.maxPixels",
    field_path=".defaults.width",
)

# Exactly-one and at-most-one choices: ModelSource, FineTuneSource, HuggingFaceCache, Placement.
MODEL_SOURCE_EXACTLY_ONE = Rule(
    "has(self.volume) != has(self.huggingFace)",
    message="set exactly one of model.volume or model.huggingFace",
)
FINE_TUNE_EXACTLY_ONE = Rule(
    "has(self.volume) != has(self.huggingFace)",
    message="set exactly one of volume or huggingFace for each file",
)
CACHE_AT_MOST_ONE = Rule(
    "!(has(self.claimName) && has(self.emptyDir))",
    message="set claimName or emptyDir, not both",
)
# The API server also checks a field's `default` against its rules, before the defaults inside it
# are filled in (placement's `{}` has no labelScheme yet): hence the has() guards.
_SCHEME = "(has(self.labelScheme) ? self.labelScheme : 'nvidia')"
TEMPLATE_IFF_CUSTOM = Rule(
    f"({_SCHEME} == 'custom') == has(self.labelKeyTemplate)",
    message_expression=(
        f"{_SCHEME} == 'custom' ? 'labelScheme custom needs labelKeyTemplate, e.g. example.com/gpu.{{model}}' "
        f": 'labelKeyTemplate is only used with labelScheme custom, not ' + {_SCHEME}"),
)

# spec.gpus[].tolerations[]: Toleration._consistent.
TOLERATION_EXISTS_NO_VALUE = Rule(
    "self.operator != 'Exists' || !has(self.value) || self.value == ''",
    message="operator Exists takes no value: remove value or use operator Equal",
    field_path=".value",
)
TOLERATION_KEYLESS_EXISTS = Rule(
    "has(self.key) || self.operator == 'Exists'",
    message="a toleration without a key needs operator Exists",
    field_path=".operator",
)
TOLERATION_SECONDS_NO_EXECUTE = Rule(
    "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
    message="tolerationSeconds needs effect NoExecute",
    field_path=".tolerationSeconds",
)
