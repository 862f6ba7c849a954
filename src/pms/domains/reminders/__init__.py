"""Appointment reminders: a periodic sweep sends email/SMS before booked appointments (docs/reminders.md)."""
