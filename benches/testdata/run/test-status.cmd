test-status
