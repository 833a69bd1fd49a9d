"""sizeup inside other trainers. Each integration is its own module, imported by name, so that
``import sizeup`` never needs a trainer's package:

* ``sizeup.integrations.torchtitan``: PyTorch's torchtitan (the optional extra
  ``pip install 'sizeup[torchtitan]'``): a model converter that parametrizes its Llama models, an
  optimizer container built by sizeup's build_optimizer, and the job config a plan emits
  (`sizeup plan --emit torchtitan`).
"""
