/* The compiled fan-out: one call per incoming packet sends every leg's copy.
 *
 * forward(packet, entries) -> bitmask, with exactly the results of
 * rooms/media/fanout.py's forward_python (tests/unit/test_media_fanout.py compares the
 * bytes). For each entry (target, marker|PT, sequence, timestamp, SSRC, plan) the packet
 * is copied into a buffer of its own, header bytes 1-11 are written, the plan's
 * extension edits applied, and libsrtp's srtp_protect (pylibsrtp's own copy, its address
 * handed over by init) encrypts it in place. The copies are then sent with sendmmsg,
 * one call per socket: legs on one socket go out in one system call.
 *
 * target is a tuple whose first three items are the srtp_t (an address), the socket
 * object and the peer's struct sockaddr as bytes. The socket's descriptor is asked for
 * on every call, so a socket closed underneath (fileno() == -1) is skipped, never a
 * descriptor number that another socket has reused since.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

typedef int (*protect_fn)(void *ctx, void *header, int *length);

#define BATCH 64
#define BUFFER 1500 /* pylibsrtp's session buffer: the packet and libsrtp's trailer */

static protect_fn srtp_protect_fn = NULL;
static Py_ssize_t largest_packet = 0;
static unsigned char buffers[BATCH][BUFFER];
static struct iovec iovs[BATCH];
static struct mmsghdr messages[BATCH];
static struct mmsghdr group[BATCH];
static int fds[BATCH];
static int slots[BATCH];
static int group_slots[BATCH];
static PyObject *fileno_name = NULL;

static PyObject *
fanout_init(PyObject *self, PyObject *args)
{
    unsigned long long address;
    Py_ssize_t largest;
    if (!PyArg_ParseTuple(args, "Kn", &address, &largest))
        return NULL;
    if (address == 0 || largest <= 12 || largest > BUFFER) {
        PyErr_SetString(PyExc_ValueError, "bad srtp_protect address or packet size");
        return NULL;
    }
    srtp_protect_fn = (protect_fn)(uintptr_t)address;
    largest_packet = largest;
    Py_RETURN_NONE;
}

static int
long_item(PyObject *tuple, Py_ssize_t i, unsigned long *out)
{
    unsigned long value = PyLong_AsUnsignedLongMask(PyTuple_GET_ITEM(tuple, i));
    if (value == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    *out = value;
    return 0;
}

/* Apply [offset u16][length u8][bytes] edit records; -1 when one falls outside. */
static int
apply_plan(unsigned char *buffer, Py_ssize_t size, const unsigned char *plan, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    while (i < n) {
        if (i + 3 > n)
            return -1;
        Py_ssize_t offset = ((Py_ssize_t)plan[i] << 8) | plan[i + 1];
        Py_ssize_t length = plan[i + 2];
        if (i + 3 + length > n || offset + length > size)
            return -1;
        memcpy(buffer + offset, plan + i + 3, (size_t)length);
        i += 3 + length;
    }
    return 0;
}

/* Prepare up to BATCH entries starting at `first`; send them; the bitmask of sends. */
static int
forward_batch(const unsigned char *packet, Py_ssize_t size, PyObject **entries,
              Py_ssize_t first, Py_ssize_t count, uint64_t *sent)
{
    int ready = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *entry = entries[first + i];
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 6) {
            PyErr_SetString(PyExc_TypeError, "an entry is (target, marker_pt, seq, ts, ssrc, plan)");
            return -1;
        }
        PyObject *target = PyTuple_GET_ITEM(entry, 0);
        PyObject *plan = PyTuple_GET_ITEM(entry, 5);
        if (!PyTuple_Check(target) || PyTuple_GET_SIZE(target) < 3 ||
            !PyBytes_Check(PyTuple_GET_ITEM(target, 2)) || !PyBytes_Check(plan)) {
            PyErr_SetString(PyExc_TypeError, "a target is (srtp_t, socket, sockaddr, ...)");
            return -1;
        }
        unsigned long marker_pt, sequence, timestamp, ssrc;
        if (long_item(entry, 1, &marker_pt) || long_item(entry, 2, &sequence) ||
            long_item(entry, 3, &timestamp) || long_item(entry, 4, &ssrc))
            return -1;
        void *ctx = PyLong_AsVoidPtr(PyTuple_GET_ITEM(target, 0));
        if (ctx == NULL && PyErr_Occurred())
            return -1;
        PyObject *fd_object = PyObject_CallMethodNoArgs(PyTuple_GET_ITEM(target, 1), fileno_name);
        if (fd_object == NULL)
            return -1;
        long fd = PyLong_AsLong(fd_object);
        Py_DECREF(fd_object);
        if (fd == -1 && PyErr_Occurred())
            return -1;
        if (fd < 0 || ctx == NULL)
            continue; /* closed underneath: the connection is going away */

        unsigned char *buffer = buffers[ready];
        memcpy(buffer, packet, (size_t)size);
        buffer[1] = (unsigned char)marker_pt;
        buffer[2] = (unsigned char)(sequence >> 8);
        buffer[3] = (unsigned char)sequence;
        buffer[4] = (unsigned char)(timestamp >> 24);
        buffer[5] = (unsigned char)(timestamp >> 16);
        buffer[6] = (unsigned char)(timestamp >> 8);
        buffer[7] = (unsigned char)timestamp;
        buffer[8] = (unsigned char)(ssrc >> 24);
        buffer[9] = (unsigned char)(ssrc >> 16);
        buffer[10] = (unsigned char)(ssrc >> 8);
        buffer[11] = (unsigned char)ssrc;
        Py_ssize_t plan_size = PyBytes_GET_SIZE(plan);
        if (plan_size && apply_plan(buffer, size, (const unsigned char *)PyBytes_AS_STRING(plan),
                                    plan_size))
            continue;
        int length = (int)size;
        if (srtp_protect_fn(ctx, buffer, &length) != 0)
            continue; /* libsrtp refused it (e.g. numbering it has seen): dropped */

        PyObject *address = PyTuple_GET_ITEM(target, 2);
        iovs[ready].iov_base = buffer;
        iovs[ready].iov_len = (size_t)length;
        memset(&messages[ready], 0, sizeof(messages[ready]));
        messages[ready].msg_hdr.msg_name = PyBytes_AS_STRING(address);
        messages[ready].msg_hdr.msg_namelen = (socklen_t)PyBytes_GET_SIZE(address);
        messages[ready].msg_hdr.msg_iov = &iovs[ready];
        messages[ready].msg_hdr.msg_iovlen = 1;
        fds[ready] = (int)fd;
        slots[ready] = (int)i;
        ready++;
    }

    /* One sendmmsg per socket, its messages in entry order. */
    char done[BATCH] = {0};
    for (int j = 0; j < ready; j++) {
        if (done[j])
            continue;
        int fd = fds[j], members = 0;
        for (int k = j; k < ready; k++) {
            if (!done[k] && fds[k] == fd) {
                group[members] = messages[k];
                group_slots[members] = slots[k];
                members++;
                done[k] = 1;
            }
        }
        int offset = 0;
        while (offset < members) {
            int n = sendmmsg(fd, group + offset, (unsigned int)(members - offset), MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                /* Not draining, or closed: this copy is lost (as sendto would lose it), the
                 * rest are tried. NACK and PLI recover; a queue would add latency. */
                offset++;
                continue;
            }
            for (int q = 0; q < n; q++)
                *sent |= (uint64_t)1 << group_slots[offset + q];
            offset += n;
        }
    }
    return 0;
}

static PyObject *
fanout_forward(PyObject *self, PyObject *args)
{
    Py_buffer packet;
    PyObject *entries;
    if (srtp_protect_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_fanout.init was not called");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*O", &packet, &entries))
        return NULL;
    PyObject *fast = PySequence_Fast(entries, "entries must be a sequence");
    if (fast == NULL) {
        PyBuffer_Release(&packet);
        return NULL;
    }
    PyObject *result = PyLong_FromLong(0);
    Py_ssize_t total = PySequence_Fast_GET_SIZE(fast);
    if (result != NULL && packet.len >= 12 && packet.len <= largest_packet) {
        PyObject **items = PySequence_Fast_ITEMS(fast);
        for (Py_ssize_t first = 0; first < total; first += BATCH) {
            Py_ssize_t count = total - first < BATCH ? total - first : BATCH;
            uint64_t sent = 0;
            if (forward_batch(packet.buf, packet.len, items, first, count, &sent)) {
                Py_CLEAR(result);
                break;
            }
            if (first == 0) {
                Py_DECREF(result);
                result = PyLong_FromUnsignedLongLong(sent);
            } else if (sent) {
                PyObject *chunk = PyLong_FromUnsignedLongLong(sent);
                PyObject *shift = PyLong_FromSsize_t(first);
                PyObject *moved = chunk && shift ? PyNumber_Lshift(chunk, shift) : NULL;
                PyObject *merged = moved ? PyNumber_Or(result, moved) : NULL;
                Py_XDECREF(chunk);
                Py_XDECREF(shift);
                Py_XDECREF(moved);
                Py_DECREF(result);
                result = merged;
            }
            if (result == NULL)
                break;
        }
    }
    Py_DECREF(fast);
    PyBuffer_Release(&packet);
    return result;
}

static PyMethodDef methods[] = {
    {"init", fanout_init, METH_VARARGS,
     "init(srtp_protect_address, largest_packet): where libsrtp's srtp_protect is."},
    {"forward", fanout_forward, METH_VARARGS,
     "forward(packet, entries) -> bitmask of the entries sent."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fanout", "The compiled fan-out (see rooms/media/fanout.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__fanout(void)
{
    fileno_name = PyUnicode_InternFromString("fileno");
    if (fileno_name == NULL)
        return NULL;
    return PyModule_Create(&module);
}
