/*
 * minirun-pause: the process that holds a pod's namespaces.
 *
 * A namespace lives as long as some process is in it. A pod's containers
 * crash, restart and come and go, yet the pod must keep its IP address
 * (network namespace), its hostname (UTS namespace) and its shared memory
 * (IPC namespace). So the runtime first starts this tiny process in the new
 * namespaces, and every container then joins them with setns(2). Nothing
 * else runs here; all this program does is:
 *
 *   SIGTERM, SIGINT  ->  exit with status 0: the pod is being stopped.
 *   SIGCHLD          ->  wait(2) for every child that has exited.
 *   anything else    ->  sleep in pause(2), using no CPU at all.
 *
 * Why the handlers matter (pid_namespaces(7)): when the pod shares one PID
 * namespace, this process is its PID 1, and the kernel treats PID 1 of a
 * namespace specially:
 *   - a signal whose action is the default is simply dropped, even SIGTERM
 *     and even from the host (only SIGKILL and SIGSTOP sent from an ancestor
 *     namespace get through). Without a SIGTERM handler the pod could only
 *     be stopped with SIGKILL.
 *   - when any process in the namespace dies, its children are reparented
 *     to PID 1. When they exit they stay zombies until PID 1 waits for them.
 *
 * minirun/pause/pause.py is the same program in Python; read the two side by
 * side. This one is what pods run, because it is small: built with
 * `gcc -Os -static` (see setup.py) it needs a few hundred KiB of memory
 * where a Python interpreter that sleeps needs about 9 MiB.
 *
 * Output goes through write(2), not printf(3): stdio would pull buffering
 * code into the static binary and is not safe to call from a signal handler.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MINIRUN_VERSION          /* setup.py passes -DMINIRUN_VERSION="x.y.z" */
#define MINIRUN_VERSION "unknown"
#endif

/* Write a whole C string to a file descriptor (1 = stdout, 2 = stderr). */
static void say(int fd, const char *text)
{
    ssize_t ignored = write(fd, text, strlen(text));
    (void)ignored;               /* nowhere to report a failed write to */
}

/* SIGTERM, SIGINT: _exit(2), not exit(3): nothing to flush, and _exit is
 * one of the few calls signal-safety(7) allows in a handler. */
static void exit_on_signal(int signum)
{
    (void)signum;
    _exit(0);
}

/* SIGCHLD: reap every child that has exited.
 *
 * Standard signals are not queued: ten children exiting at once may give one
 * SIGCHLD. So keep calling waitpid(2) with WNOHANG until it returns 0 (some
 * children still run) or -1 with ECHILD (no children left). */
static void reap_children(int signum)
{
    int saved_errno = errno;     /* the interrupted code may be reading errno */

    (void)signum;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;                        /* one zombie gone; look for the next */
    errno = saved_errno;
}

/* sigaction(2): run `handler` when `signum` arrives. */
static void handle_signal(int signum, void (*handler)(int), int flags)
{
    struct sigaction action;

    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    action.sa_flags = flags;
    sigemptyset(&action.sa_mask);
    if (sigaction(signum, &action, NULL) == -1) {
        say(2, "minirun-pause: sigaction failed\n");
        _exit(1);
    }
}

int main(int argc, char **argv)
{
    sigset_t held;

    if (argc == 2 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
        say(1, "minirun-pause " MINIRUN_VERSION " (native)\n");
        return 0;
    }
    if (argc > 1) {
        say(2, "usage: minirun-pause [-v]\n");
        return 2;
    }

    handle_signal(SIGTERM, exit_on_signal, 0);
    handle_signal(SIGINT, exit_on_signal, 0);
    /* SA_NOCLDSTOP: no SIGCHLD when a child is merely stopped (SIGSTOP). */
    handle_signal(SIGCHLD, reap_children, SA_NOCLDSTOP);

    /* The signal mask survives execve(2): if whoever started us had these
     * signals blocked, the handlers above would never run. Unblock them. */
    sigemptyset(&held);
    sigaddset(&held, SIGTERM);
    sigaddset(&held, SIGINT);
    sigaddset(&held, SIGCHLD);
    sigprocmask(SIG_UNBLOCK, &held, NULL);

    /* Children may have exited before the SIGCHLD handler existed (their
     * SIGCHLD was dropped then), and the process that exec'd us may have
     * left children behind. Reap those once by hand. */
    reap_children(SIGCHLD);

    if (getpid() != 1)
        say(2, "minirun-pause: warning: not PID 1 of a PID namespace, "
               "orphaned processes will not be reparented to this holder\n");

    for (;;)
        pause();                 /* returns after each handler has run */
}
