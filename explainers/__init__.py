"""Per-case computation: prediction, saliency (Captum), explanation-quality figures."""
