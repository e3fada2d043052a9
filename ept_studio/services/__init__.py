"""What a user can do, in plain Python (no Qt): prepare backbones, train, evaluate, predict, bench.

Service modules import ``core`` (torch, timm) inside their functions, so importing a service does not
load torch and the desktop window can appear first.
"""
