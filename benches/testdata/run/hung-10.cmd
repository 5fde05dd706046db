hung-10
