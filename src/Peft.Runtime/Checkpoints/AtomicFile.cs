using System.Text;

namespace Peft.Checkpoints;

/// <summary>
/// The library's one way to write a file that must never be seen half-written (adapter files, configs, checkpoints, run
/// status, histories): the content goes to a new temporary file in the same directory, is flushed to disk, then renamed
/// over the target, so a reader (or a process killed mid-write) sees the old file or the new one, never a torn one. On any
/// failure the temporary file is deleted and the target is left as it was.
/// </summary>
public static class AtomicFile
{
    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/>, atomically.</summary>
    /// <param name="path">The file to create or replace.</param>
    /// <param name="write">Writes the whole content to the stream it is given (the stream is flushed and closed after it).</param>
    /// <param name="preallocationSize">The content's size in bytes when known (lets the file system reserve it), else 0.</param>
    /// <exception cref="ArgumentException"><paramref name="path"/> names no file inside a directory.</exception>
    public static void Write(string path, Action<Stream> write, long preallocationSize = 0)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentNullException.ThrowIfNull(write);
        var fullPath = Path.GetFullPath(path);
        var directory = Path.GetDirectoryName(fullPath)
            ?? throw new ArgumentException($"'{path}' names no file inside a directory.", nameof(path));
        var tempPath = Path.Combine(directory, $".{Path.GetFileName(fullPath)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(tempPath, new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                Share = FileShare.None,
                BufferSize = 1 << 16,
                PreallocationSize = preallocationSize,
            }))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }

            File.Move(tempPath, fullPath, overwrite: true);
        }
        catch
        {
            TryDelete(tempPath);
            throw;
        }
    }

    /// <summary>Writes <paramref name="text"/> as UTF-8 without a byte-order mark, atomically.</summary>
    /// <param name="path">The file to create or replace.</param>
    /// <param name="text">The content.</param>
    public static void WriteAllText(string path, string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        WriteAllBytes(path, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(text));
    }

    /// <summary>Writes <paramref name="bytes"/>, atomically.</summary>
    /// <param name="path">The file to create or replace.</param>
    /// <param name="bytes">The content.</param>
    public static void WriteAllBytes(string path, ReadOnlyMemory<byte> bytes) =>
        Write(path, stream => stream.Write(bytes.Span), bytes.Length);

    /// <summary>Deletes <paramref name="path"/> if it can; a file that cannot be deleted is left (the caller's own error or
    /// success matters more than a leftover file).</summary>
    /// <param name="path">The file.</param>
    public static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // Best effort, as documented.
        }
        catch (UnauthorizedAccessException)
        {
            // Same as above.
        }
    }
}
