"""Kakao Biz Message: AlimTalk (informational, approved templates) and Brand Message (advertising)."""
