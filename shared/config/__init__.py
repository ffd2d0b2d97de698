"""Configuration read by every feature: the app settings and the image-family configuration."""
