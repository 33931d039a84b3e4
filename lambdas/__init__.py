"""Code that runs in AWS (Lambda), deployed from this repository by the stacks that use it."""
