"""Sample quality in the feature space of the project's MNIST classifier (``gan-eval``).

``classifier`` (the feature network and its training), ``metrics`` (the maths and the metric
registry), ``evaluator`` (features, metrics and the real-vs-real baseline), ``report`` (tables).
"""
