package natslog

// AtLeast is atLeast, for the tests.
var AtLeast = atLeast
