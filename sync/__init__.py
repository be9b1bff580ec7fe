"""MQTT layer of redeem-kiosk: wire protocol, device agent, HQ reference tools."""
