"""Pure logic of the kiosk: no hardware, no Kivy."""
