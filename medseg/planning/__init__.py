"""Auto-configuration of a bundle from the data, as nnU-Net plans from a dataset fingerprint.

``medseg plan --bundle B --dataset_dir D --time_budget 15m`` measures the dataset (:func:`fingerprint`), times a few
training steps of the bundle on this machine, and writes ``D/plans.json``: an override file for ``train.json``
(``--config_file "['train.json','plans.json']"``) whose every choice comes with its reason.
"""

from medseg.planning.fingerprint import fingerprint
from medseg.planning.planner import PlanError, check_plan, describe_plan, make_plan, parse_duration, write_plan

__all__ = ["PlanError", "check_plan", "describe_plan", "fingerprint", "make_plan", "parse_duration", "write_plan"]
