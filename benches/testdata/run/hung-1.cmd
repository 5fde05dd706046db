hung-1
