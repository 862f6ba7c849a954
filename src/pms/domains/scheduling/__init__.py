"""Scheduling: availability, Slots, booking without double booking, recurring series, $find/$book."""
