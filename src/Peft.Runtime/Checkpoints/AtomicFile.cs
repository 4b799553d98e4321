using System.Text;

namespace Peft.Checkpoints;

/// <summary>Writes small text files atomically: a temporary file in the same directory, flushed, then renamed.</summary>
internal static class AtomicFile
{
    public static void WriteAllText(string path, string text)
    {
        var fullPath = Path.GetFullPath(path);
        var directory = Path.GetDirectoryName(fullPath)
            ?? throw new ArgumentException($"'{path}' names no file inside a directory.", nameof(path));
        var tempPath = Path.Combine(directory, $".{Path.GetFileName(fullPath)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(tempPath, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                stream.Write(new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(text));
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

    public static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // Best effort: the caller's own error (or success) matters more than a leftover file.
        }
        catch (UnauthorizedAccessException)
        {
            // Same as above.
        }
    }
}
