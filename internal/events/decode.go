package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"slices"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// The decoders below read an event of this package and check it whole: its type, source,
// content type, data, subject and ordering extension. Their errors say what is wrong, for
// the sender (the event is invalid and will never be accepted).

// DecodePod reads a TypePodChanged or TypePodDeleted event; deleted tells which.
func DecodePod(e event.Event) (cluster string, deleted bool, p Pod, err error) {
	if cluster, err = envelope(e, TypePodChanged, TypePodDeleted); err != nil {
		return "", false, Pod{}, err
	}
	if err = decodeData(e, &p); err != nil {
		return "", false, Pod{}, err
	}
	if err = p.Validate(); err != nil {
		return "", false, Pod{}, fmt.Errorf("invalid data: %w", err)
	}
	if err = subjectAndOrdering(e, Subject(p.Namespace, p.App), p.Ordering); err != nil {
		return "", false, Pod{}, err
	}
	return cluster, e.Type() == TypePodDeleted, p, nil
}

// DecodeWorkflow reads a TypeWorkflowChanged or TypeWorkflowDeleted event.
func DecodeWorkflow(e event.Event) (cluster string, deleted bool, w Workflow, err error) {
	if cluster, err = envelope(e, TypeWorkflowChanged, TypeWorkflowDeleted); err != nil {
		return "", false, Workflow{}, err
	}
	if err = decodeData(e, &w); err != nil {
		return "", false, Workflow{}, err
	}
	if err = w.Validate(); err != nil {
		return "", false, Workflow{}, fmt.Errorf("invalid data: %w", err)
	}
	if err = subjectAndOrdering(e, Subject(w.Namespace, w.App), w.Ordering); err != nil {
		return "", false, Workflow{}, err
	}
	return cluster, e.Type() == TypeWorkflowDeleted, w, nil
}

// DecodeWorkflowSucceeded reads a TypeWorkflowSucceeded event.
func DecodeWorkflowSucceeded(e event.Event) (cluster string, w Workflow, err error) {
	if cluster, err = envelope(e, TypeWorkflowSucceeded); err != nil {
		return "", Workflow{}, err
	}
	if err = decodeData(e, &w); err != nil {
		return "", Workflow{}, err
	}
	if err = w.Validate(); err != nil {
		return "", Workflow{}, fmt.Errorf("invalid data: %w", err)
	}
	if w.Phase != "Succeeded" {
		return "", Workflow{}, fmt.Errorf("invalid data: phase %q is not Succeeded", w.Phase)
	}
	if err = subjectAndOrdering(e, Subject(w.Namespace, w.App), w.Ordering); err != nil {
		return "", Workflow{}, err
	}
	return cluster, w, nil
}

// DecodeAppSnapshot reads a TypeAppSnapshot event.
func DecodeAppSnapshot(e event.Event) (cluster string, s AppSnapshot, err error) {
	if cluster, err = envelope(e, TypeAppSnapshot); err != nil {
		return "", AppSnapshot{}, err
	}
	if err = decodeData(e, &s); err != nil {
		return "", AppSnapshot{}, err
	}
	if err = s.Validate(); err != nil {
		return "", AppSnapshot{}, fmt.Errorf("invalid data: %w", err)
	}
	if err = subjectAndOrdering(e, Subject(s.Namespace, s.App), s.Revision); err != nil {
		return "", AppSnapshot{}, err
	}
	return cluster, s, nil
}

// DecodeClusterSnapshot reads a TypeClusterSnapshot event.
func DecodeClusterSnapshot(e event.Event) (cluster string, s ClusterSnapshot, err error) {
	if cluster, err = envelope(e, TypeClusterSnapshot); err != nil {
		return "", ClusterSnapshot{}, err
	}
	if err = decodeData(e, &s); err != nil {
		return "", ClusterSnapshot{}, err
	}
	if err = s.Validate(); err != nil {
		return "", ClusterSnapshot{}, fmt.Errorf("invalid data: %w", err)
	}
	if err = subjectAndOrdering(e, "", s.Revision); err != nil {
		return "", ClusterSnapshot{}, err
	}
	return cluster, s, nil
}

func envelope(e event.Event, want ...string) (string, error) {
	if !slices.Contains(want, e.Type()) {
		return "", fmt.Errorf("type %q is not one of %v", e.Type(), want)
	}
	cluster, err := ClusterFromSource(e.Source())
	if err != nil {
		return "", err
	}
	if ct := e.DataContentType(); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != ContentType {
			return "", fmt.Errorf("datacontenttype %q: want %s", ct, ContentType)
		}
	}
	if len(e.Data()) == 0 {
		return "", errors.New("the event has no data")
	}
	return cluster, nil
}

// decodeData reads exactly one JSON object into v. Unknown members are ignored, so that
// a producer may add optional members without a new version.
func decodeData(e event.Event, v any) error {
	data := e.Data()
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return errors.New("data is not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data: more than one JSON value")
	}
	return nil
}

func subjectAndOrdering(e event.Event, subject string, ord Ordering) error {
	if e.Subject() != subject {
		if subject == "" {
			return fmt.Errorf("subject %q: this type has no subject", e.Subject())
		}
		return fmt.Errorf("subject %q does not match the data's app %q", e.Subject(), subject)
	}
	if v, ok := e.Extensions()[ExtensionOrdering]; ok {
		s, err := types.ToString(v)
		if err != nil {
			return fmt.Errorf("extension %s: %w", ExtensionOrdering, err)
		}
		if s != ord.String() {
			return fmt.Errorf("extension %s=%q does not match the data's ordering key %s", ExtensionOrdering, s, ord)
		}
	}
	return nil
}
