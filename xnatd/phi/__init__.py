"""The PHI check (SPEC 10.2): patient information left after anonymization.

``headers``: identifying values the sender gave, found again in what will be written.
``pixels``: text burned into the image, read with Tesseract. ``clean``: blanking the
regions found.
"""
