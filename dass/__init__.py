"""DaSS: meta-prediction of a student's accuracy after knowledge distillation, on unseen datasets.

Public API (kept stable; the CLI, scripts and notebook use it):

- :mod:`dass.config` -- ``load_config(path, overrides)`` -> typed :class:`~dass.config.Config`
- :mod:`dass.space` -- ``Arch``, ``SearchSpace`` (sample, teacher, encode, macs, params)
- :mod:`dass.nets` -- ``ResNet``; :mod:`dass.train.checkpoints` -- ``load_model_checkpoint`` (the one model loader)
- :mod:`dass.train.teachers` -- ``teacher_status``, ``is_teacher_ready``, ``load_teacher_for``, ``ensure_teacher``
  (the one notion of a ready teacher; released teachers are read only)
- :mod:`dass.remap` -- ``remap(teacher, student, strategy)``
- :mod:`dass.data.tasks` -- ``load_task(name, cfg)``, ``make_loader(task, cfg, split, batch_size)``
- :mod:`dass.train.engine` -- ``train_teacher``, ``distill``, ``kd_student``, ``evaluate``
- :mod:`dass.train.logit_cache` -- ``TeacherLogitCache`` (pass to ``distill`` to share teacher logits)
- :mod:`dass.embed` -- ``noise_input``, ``functional_map``, ``student_map``;
  :mod:`dass.fastembed` -- ``remapped_maps``, ``remapped_maps_parallel``
- :mod:`dass.db.build` / :mod:`dass.db.records` -- ``build``, ``merge``, ``load_records``;
  :mod:`dass.search` -- ``run_search``, ``build_candidates``, ``load_candidates`` (the search's candidate pools);
  :mod:`dass.layout` -- ``config_layout`` (the input layout every written file carries)
- :mod:`dass.predictor.trainer` -- ``MetaTrainer``, ``train_or_reuse``; :mod:`dass.predictor.checkpoint` --
  ``load_predictor`` -> ``LoadedPredictor``; :mod:`dass.predictor.inference` -- ``predict``, ``evaluate_task``;
  :mod:`dass.predictor.inner` -- the inner update
- :mod:`dass.predictor.methods` -- ``REGISTRY``, ``score(name, records)``: DaSS, its ablations and every baseline
- :mod:`dass.evaluate` -- ``run_meta_test(cfg, seeds=...)`` -> rows and statistics;
  :mod:`dass.stats` -- ``bootstrap_spearman``, ``paired_bootstrap``, ``noise_ceiling``, ``verdict``
- :mod:`dass.manifest` -- ``write_manifest``, ``verify_manifest`` (a committed database)
- :mod:`dass.search` -- ``run_search(cfg, task)``; :mod:`dass.demo` -- ``run_demo(cfg)``
"""
__version__ = "0.1.0"
