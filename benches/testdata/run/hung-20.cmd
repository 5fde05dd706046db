hung-20
