"""The Kivy touch UI (imports Kivy only when used)."""
