//go:build !linux

package main

import (
	"context"
	"errors"
)

func runFloorReceiverIfChild() bool { return false }

func runFloor(context.Context, config, *report) error {
	return errors.New("the floor scenario uses Linux system calls")
}
