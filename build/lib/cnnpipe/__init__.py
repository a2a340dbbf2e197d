"""cnnpipe: rank FITS/HDF5 frames by how anomalous they are (Sobel + CNN + VAE) and report them."""
__version__ = "0.1.0"
