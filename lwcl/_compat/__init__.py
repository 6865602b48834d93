"""Import paths of lwcl 0.1 that moved in 0.2, kept for one release.

``lwcl/__init__.py`` appends this folder to the package's ``__path__``, so ``import lwcl.setup`` (say) finds
``_compat/setup.py``, which warns (``DeprecationWarning``) and puts the module at its new place
(``lwcl.engine.build``) in ``sys.modules`` under the old name: the old name is the same module object, not
a copy. These files go in lwcl 0.3.
"""
