"""``medgen demo``: the main job on the built-in data, end to end, in a few minutes on a CPU.

The demo sits above every library layer (it uses ``data``, ``enhance``, ``synthesize``,
``training`` and ``evaluate`` together) and only the CLI imports it, so no library module depends
on demo code:

- :mod:`medgen.demo.scans`: scan I/O in every format, the simulated cohort and the CT phantom;
- :mod:`medgen.demo.enhance`: denoising and super-resolution of a real MNI152 crop, with PSNR;
- :mod:`medgen.demo.models`: three small generative models trained on the 3 mm cohort, and samples.

Each step writes into one output folder and returns ``{label: path}`` of what it wrote, so the CLI
can print them and notebooks can show them.
"""
