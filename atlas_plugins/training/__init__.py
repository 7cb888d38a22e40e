"""Rubric-based GRPO of the native agent (needs the ``train`` extra).

* :mod:`atlas_plugins.training.config` — ``AtlasGRPOConfig`` (TRL's ``GRPOConfig`` + ATLAS settings)
* :mod:`atlas_plugins.training.trainer` — ``AtlasTrainer`` (TRL ``GRPOTrainer`` with our rollouts)
* :mod:`atlas_plugins.training.warmstart` — behaviour cloning on verified demonstrations
* evaluation (designs, ``evaluate``) lives in :mod:`atlas_plugins.evaluation`, the ``Scorer`` in
  :mod:`atlas_plugins.rewards.scorer`; :mod:`atlas_plugins.training.evaluate` re-exports them
* :mod:`atlas_plugins.training.demo` — ``atlas demo``

Nothing is imported here, so ``import atlas_plugins`` never pulls torch or TRL.
"""
