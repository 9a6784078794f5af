"""Text messages on Korean carriers: SMS, LMS and MMS (one channel, three types)."""
