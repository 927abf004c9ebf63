"""Chapter 6, deployment preparation: weight quantisation, quantised models and their files.

``quantize`` (notebook 1) holds the int8 and int4 schemes; ``quantized`` (notebook 2) the
quantised linear layer, whole-model conversion and the safetensors format; ``loading``
the one loader that later chapters call for any folder this course writes; ``compare``
the table of size and perplexity per scheme that ``python -m tinygpt.quantize`` prints.
"""
