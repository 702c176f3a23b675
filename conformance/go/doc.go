// Package conformance runs Go's Kafka clients against korvet.
package conformance
