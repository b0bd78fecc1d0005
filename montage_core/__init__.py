"""montage: beat-synchronized montages from a folder of clips and a music track."""

__version__ = "0.1.0"
