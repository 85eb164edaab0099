"""radvigil: keeps medical-imaging classifiers safe after they ship."""

__version__ = "0.1.0"
