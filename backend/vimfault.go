package backend

import (
	"context"
	"errors"
	"reflect"

	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// vimError wraps a failed vSphere call made without Conn.Do (SOAP fault,
// task error, transport error) into an *Error, its kind from faultKind, the
// one table. A cancelled context is returned as is, as classify does.
func vimError(call, on string, err error) error {
	var be *Error
	if errors.As(err, &be) || errors.Is(err, context.Canceled) {
		return err
	}
	return newError(call, on, faultKind(vimFault(err)), err)
}

// vimFault digs the vSphere fault out of an error, or nil.
func vimFault(err error) types.BaseMethodFault {
	var te task.Error  // from task.Wait
	var tp *task.Error // from nfc.Lease.Wait
	switch {
	case soap.IsSoapFault(err):
		return asMethodFault(soap.ToSoapFault(err).VimFault())
	case soap.IsVimFault(err):
		return soap.ToVimFault(err)
	case errors.As(err, &te) && te.LocalizedMethodFault != nil:
		return te.Fault()
	case errors.As(err, &tp) && tp != nil && tp.LocalizedMethodFault != nil:
		return tp.Fault()
	}
	return nil
}

// asMethodFault makes a fault a types.BaseMethodFault: SOAP fault details
// decode as struct values (types.InvalidPowerState), which only implement
// it through a pointer.
func asMethodFault(v any) types.BaseMethodFault {
	if f, ok := v.(types.BaseMethodFault); ok {
		return f
	}
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || rv.Kind() != reflect.Struct {
		return nil
	}
	p := reflect.New(rv.Type())
	p.Elem().Set(rv)
	f, _ := p.Interface().(types.BaseMethodFault)
	return f
}
