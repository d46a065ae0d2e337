"""DaSS: meta-prediction of a student's accuracy after knowledge distillation, on unseen datasets.

Public API (kept stable; the CLI, scripts and notebook use it):

- :mod:`dass.config` -- ``load_config(path, overrides)`` -> typed :class:`~dass.config.Config`
- :mod:`dass.space` -- ``Arch``, ``SearchSpace`` (sample, teacher, encode, macs, params)
- :mod:`dass.nets` -- ``ResNet``, ``load_teacher``
- :mod:`dass.remap` -- ``remap(teacher, student, strategy)``
"""
__version__ = "0.1.0"
