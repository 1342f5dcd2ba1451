"""The training command (``mlcourse-train``), one job per module.

===============  ===========================================================  ===================
module           job                                                          imports (training)
===============  ===========================================================  ===================
``overrides``    raw configs: read a file, ``--set``, ``--sweep``             -
``config``       ``TrainConfig`` and its sections, declared and checked       overrides
``data``         load the data and split it (``load_data``)                   config
``distributed``  torchrun ranks: launch, rendezvous, agreement of the ranks   -
``shards``       each rank's share of the data, and its loss weight           -
``model``        model sizes, model, optimizer, schedule, ``evaluate``        config
``runs``         run folders, ``RunPlan``, records, metrics, summary          config, data,
                                                                              distributed
``checkpoints``  find, verify and load a run's checkpoints                    runs, config, model
``tracking``     MLflow (``Tracker``, ``tracking_uri``, ``quiet_mlflow``)       runs
``report``       what the command prints                                      runs, distributed
``resume``       where a session continues, or why it cannot                  runs, checkpoints
``state``        what a checkpoint holds: ``Parts``, ``Progress``, the writer   runs, model, tracking,
                                                                              shards
``session``      open a session: resume point, run folder, record             resume, state
``loop``         the training loop (``run_training``)                         the layers below
``planning``     command line -> checked ``RunPlan`` list (``plan_runs``)     the layers below
``cli``          ``main``: pin numerics, parse, plan, join the ranks, train   planning, loop
===============  ===========================================================  ===================

Nothing imports upwards, and this package imports nothing on its own, so ``cli`` can pin
the numerics environment (:mod:`mlcourse.numerics`) before torch is loaded.

Example:
    >>> from mlcourse.training.config import TrainConfig
    >>> TrainConfig.from_dict({"epochs": 2}).epochs
    2
"""
