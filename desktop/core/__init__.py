"""Qt-free, TensorFlow-free engine: imaging, inference, sessions, summaries, export."""
