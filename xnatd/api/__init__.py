"""The HTTP API: XNAT-compatible REST, DICOMweb STOW-RS, users and project roles.

A door like C-STORE and the inbox: uploads go through the same intake and importer,
operations through the same claims; nothing here touches files or the index directly
except through the store's faces (``Store``, ``Pipeline``).
"""
