"""Synthetic demo data (FF++ layout) made offline from skimage.data.astronaut(); see :mod:`dfkit.demo.synth`."""
