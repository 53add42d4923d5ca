"""Training strategies of the published skin-lesion and cardiac work, for any medseg bundle.

One concern per module, each importable on its own (nothing heavy is imported here):

- :mod:`~medseg.strategies.freeze`: frozen encoder, two learning rates, the two-stage unfreeze recipe;
- :mod:`~medseg.strategies.schedules`: step-wise learning-rate schedules (one-cycle, cosine per epoch, step drop);
- :mod:`~medseg.strategies.class_weights`: inverse-frequency and effective-number class weights from ``stats.json``;
- :mod:`~medseg.strategies.lr_finder`: MONAI's ``LearningRateFinder`` with a plot and a suggestion;
- :mod:`~medseg.strategies.progressive`: progressive resizing (stages start from the previous stage's weights);
- :mod:`~medseg.strategies.kfold`: per-fold datalists and the best-single vs mean-ensemble test evaluation;
- :mod:`~medseg.strategies.sweep`: ``--grid`` parsing into bundle overrides;
- :mod:`~medseg.strategies.resume`: full-state checkpoints and ``--resume`` into the same MLflow run;
- :mod:`~medseg.strategies.launch`: finding bundles and override files, running a bundle in-process;
- :mod:`~medseg.strategies.runs`: MLflow parent and child runs for the multi-run commands.

The override files in ``bundles/strategies/`` wire these into any bundle's ``train.json``; see ``docs/strategies.md``.
"""

from medseg.strategies.errors import StrategyError

__all__ = ["StrategyError"]
