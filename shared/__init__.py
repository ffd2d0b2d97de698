"""The app's core: settings, the client factory, domain models and policies, state and alerts."""
