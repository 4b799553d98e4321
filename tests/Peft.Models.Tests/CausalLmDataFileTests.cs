using System.Text;
using CausalLM;
using Peft.Text;

namespace Peft.Models.Tests;

/// <summary>
/// The causal-LM sample's <c>--data FILE</c>: plain text and JSONL reading, format detection, the held-out split, and
/// one clear line (file, line, fix) for each kind of bad file.
/// </summary>
public sealed class CausalLmDataFileTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "peft-causal-data-" + Guid.NewGuid().ToString("N")[..8]);

    public CausalLmDataFileTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private string Write(string name, string text) => WriteBytes(name, Encoding.UTF8.GetBytes(text));

    private string WriteBytes(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static string Error(Action read)
    {
        var e = Assert.Throws<DataFileException>(read);
        Assert.DoesNotContain('\n', e.Message);
        return e.Message;
    }

    [Fact]
    public void Plain_text_is_one_document_without_its_byte_order_mark()
    {
        string text = "Call me Ishmael.\n\nSome years ago, never mind how long precisely.\n";
        string path = WriteBytes("moby.txt", [.. Encoding.UTF8.Preamble, .. Encoding.UTF8.GetBytes(text)]);

        var read = DataFile.Read(path);

        Assert.Equal(DataFormat.PlainText, read.Format);
        Assert.Equal(new[] { text }, read.Documents);
        Assert.Equal(text.Length, read.Characters);
        Assert.Equal(path, read.Path);
    }

    [Fact]
    public void Jsonl_gives_one_document_per_line_in_file_order()
    {
        string path = Write("chapters.jsonl",
            "{\"chapter\": 1, \"text\": \"Call me Ishmael.\"}\n" +
            "\n" +                                          // blank lines are skipped
            "{\"chapter\": 2, \"text\": \"\"}\r\n" +        // an empty text adds nothing
            "{\"text\": \"The carpet-bag \\u2014 \\\"quoted\\\".\", \"chapter\": 3}\n");

        var read = DataFile.Read(path);

        Assert.Equal(DataFormat.Jsonl, read.Format);
        Assert.Equal(new[] { "Call me Ishmael.", "The carpet-bag \u2014 \"quoted\"." }, read.Documents);
        Assert.Equal(read.Documents.Sum(d => d.Length), read.Characters);
    }

    [Fact]
    public void Text_field_picks_another_field()
    {
        string path = Write("qa.jsonl", "{\"body\": \"first\", \"text\": 5}\n{\"body\": \"second\"}\n");
        Assert.Equal(new[] { "first", "second" }, DataFile.Read(path, textField: "body").Documents);
    }

    [Theory]
    [InlineData("data.jsonl", "plain words", DataFormat.Jsonl)]
    [InlineData("data.JSON", "plain words", DataFormat.Jsonl)]
    [InlineData("data.txt", "{\"text\": \"a\"}", DataFormat.PlainText)]
    [InlineData("data", "\n  {\"text\": \"a\"}\n{\"text\": \"b\"}", DataFormat.Jsonl)]
    [InlineData("data.corpus", "{\"text\": \"a\"}", DataFormat.Jsonl)]
    [InlineData("data", "Call me Ishmael.", DataFormat.PlainText)]
    [InlineData("data", "{curly braces start this story}", DataFormat.PlainText)]
    [InlineData("data", "[1, 2, 3]", DataFormat.PlainText)]
    public void Format_comes_from_the_extension_else_from_the_first_line(string name, string content, DataFormat expected)
    {
        Assert.Equal(expected, DataFile.DetectFormat(Write(name, content)));
    }

    [Fact]
    public void A_missing_file_names_the_path_and_where_it_was_looked_for()
    {
        string path = Path.Combine(_dir, "nope.txt");
        string message = Error(() => DataFile.Read(path));
        Assert.StartsWith($"--data {path}: no such file", message);
        Assert.Contains("Check the path", message);
    }

    [Fact]
    public void A_folder_is_not_a_file()
    {
        string message = Error(() => DataFile.Read(_dir));
        Assert.StartsWith($"--data {_dir}: that is a folder; give one file", message);
    }

    [Theory]
    [InlineData("empty.txt", "")]
    [InlineData("blank.txt", " \n\t\n")]
    [InlineData("empty.jsonl", "\n\n")]
    public void An_empty_file_says_what_to_put_in_it(string name, string content)
    {
        string path = Write(name, content);
        string message = Error(() => DataFile.Read(path));
        Assert.StartsWith($"--data {path}: the file is empty (no text).", message);
        Assert.Contains("plain UTF-8 text, or one JSON object per line such as {\"text\": \"...\"}", message);
    }

    [Fact]
    public void Jsonl_whose_texts_are_all_empty_has_nothing_to_train_on()
    {
        string path = Write("empty-texts.jsonl", "{\"text\": \"\"}\n{\"text\": \"\"}\n");
        string message = Error(() => DataFile.Read(path));
        Assert.StartsWith($"--data {path}: every \"text\" is an empty string", message);
        Assert.Contains("--text-field NAME", message);
    }

    [Fact]
    public void A_line_that_is_not_json_gives_its_number_and_the_jsonl_rule()
    {
        string path = Write("bad.jsonl", "{\"text\": \"a\"}\n\n  hello\n{\"text\": \"b\"}\n");
        string message = Error(() => DataFile.Read(path));
        Assert.StartsWith($"--data {path}:3: not valid JSON (", message);
        Assert.Contains("at byte 3 of the line", message);
        Assert.DoesNotContain("LineNumber: 0", message); // System.Text.Json's own line count is always 0 here
        Assert.Contains("JSONL needs one JSON object per line", message);
        Assert.Contains("name the file .txt", message);
    }

    [Fact]
    public void A_json_array_file_is_refused_with_the_jsonl_rule()
    {
        string path = Write("data.json", "[{\"text\": \"a\"}, {\"text\": \"b\"}]\n");
        string message = Error(() => DataFile.Read(path));
        Assert.StartsWith($"--data {path}:1: expected a JSON object, found Array.", message);
        Assert.Contains("a JSON array, or an object spread over several lines, is not JSONL", message);
    }

    [Fact]
    public void A_line_without_the_field_lists_the_fields_it_has_and_names_text_field()
    {
        string path = Write("fields.jsonl", "{\"text\": \"a\"}\n{\"title\": \"Loomings\", \"body\": \"b\"}\n");
        string message = Error(() => DataFile.Read(path));
        Assert.Equal(
            $"--data {path}:2: no field \"text\" (the line has \"title\", \"body\"). Pass --text-field NAME with the field that holds the text, or add \"text\" to the line.",
            message);

        message = Error(() => DataFile.Read(path, textField: "body"));
        Assert.StartsWith($"--data {path}:1: no field \"body\" (the line has \"text\").", message);
    }

    [Theory]
    [InlineData("5", "a number")]
    [InlineData("null", "null")]
    [InlineData("[\"a\"]", "an array")]
    [InlineData("{\"a\": 1}", "an object")]
    [InlineData("true", "a boolean")]
    public void A_field_that_is_not_a_string_says_what_it_is(string value, string kind)
    {
        string path = Write("types.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": " + value + "}\n");
        string message = Error(() => DataFile.Read(path));
        Assert.StartsWith($"--data {path}:3: field \"text\" is {kind}, not a string.", message);
    }

    [Fact]
    public void Text_that_is_not_utf8_gives_the_line_and_offset_and_how_to_convert()
    {
        // "ok\nna\xEFve" in Windows-1252: 0xEF alone is not UTF-8.
        string path = WriteBytes("latin.txt", [(byte)'o', (byte)'k', (byte)'\n', (byte)'n', (byte)'a', 0xEF, (byte)'v', (byte)'e']);
        string message = Error(() => DataFile.Read(path));
        Assert.StartsWith($"--data {path}:2: not UTF-8 text (invalid byte 0xEF at byte offset 5).", message);
        Assert.Contains("iconv -f WINDOWS-1252 -t UTF-8", message);

        // A JSONL file is checked the same way before any line is parsed.
        string jsonl = WriteBytes("latin.jsonl", [.. Encoding.ASCII.GetBytes("{\"text\": \"na"), 0xEF, .. Encoding.ASCII.GetBytes("ve\"}\n")]);
        Assert.StartsWith($"--data {jsonl}:1: not UTF-8 text", Error(() => DataFile.Read(jsonl)));
    }

    [Fact]
    public void The_last_tenth_of_the_blocks_is_held_out()
    {
        var tokens = Enumerable.Range(0, 100 * 8 + 1).ToArray(); // exactly 100 blocks of 8
        var split = DataFile.SplitBlocks("f.txt", tokens, blockSize: 8, tokenizer: "bytes");

        Assert.Equal(90, split.Train.Count);
        Assert.Equal(10, split.Validation.Count);
        Assert.Equal(Enumerable.Range(0, 8), split.Train[0].InputIds);
        Assert.Equal(Enumerable.Range(1, 8), split.Train[0].TokenLabels!);
        Assert.Equal(Enumerable.Range(720, 8), split.Validation[0].InputIds); // block 90 follows the last training block
        Assert.Equal(Enumerable.Range(793, 8), split.Validation[^1].TokenLabels!);

        // The same stream always splits the same way (no seed involved).
        var again = DataFile.SplitBlocks("f.txt", tokens, blockSize: 8, tokenizer: "bytes");
        Assert.Equal(split.Validation.Select(b => b.InputIds.ToArray()), again.Validation.Select(b => b.InputIds.ToArray()));
    }

    [Theory]
    [InlineData(17, 1, 1)]   // the minimum: 2 x 8 + 1
    [InlineData(40, 3, 1)]   // 4 blocks: round(0.4) = 0, but one is always held out
    [InlineData(121, 13, 2)] // 15 blocks: round(1.5) = 2
    public void Short_streams_still_hold_out_one_block(int tokens, int train, int validation)
    {
        var split = DataFile.SplitBlocks("f.txt", Enumerable.Range(0, tokens).ToArray(), blockSize: 8, tokenizer: "bytes");
        Assert.Equal(train, split.Train.Count);
        Assert.Equal(validation, split.Validation.Count);
    }

    [Fact]
    public void Too_little_text_says_how_many_tokens_are_needed()
    {
        Assert.Equal(129, DataFile.MinimumTokens(64));
        string message = Error(() => DataFile.SplitBlocks("my.txt", new int[128], blockSize: 64, tokenizer: "UTF-8 bytes (ids 0..255)"));
        Assert.Equal(
            "--data my.txt: 128 tokens with UTF-8 bytes (ids 0..255), but --block-size 64 needs at least 129 (one training and one validation block of 64 tokens, plus the last block's next token). Add text to the file, or pass a smaller --block-size.",
            message);
    }

    // The sample itself, run in this process through its entry point: a bad file ends it with exit code 2 and one
    // line on standard error, and no stack trace; a good file trains and reloads.

    private static (int ExitCode, string Out, string Error) RunSample(params string[] args)
    {
        var entry = typeof(DataFile).Assembly.EntryPoint!;
        var (oldOut, oldError) = (Console.Out, Console.Error);
        using var output = new StringWriter();
        using var error = new StringWriter();
        Console.SetOut(output);
        Console.SetError(error);
        try
        {
            object? result = entry.Invoke(null, [args]);
            int code = result is Task<int> task ? task.GetAwaiter().GetResult() : (int)result!;
            return (code, output.ToString(), error.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldError);
        }
    }

    [Fact]
    public void The_sample_ends_a_bad_file_with_one_line_and_exit_code_2()
    {
        string output = Path.Combine(_dir, "out");
        var cases = new (string[] Args, string Expected)[]
        {
            (["--data", Path.Combine(_dir, "missing.txt")], "no such file"),
            (["--data", Write("empty.jsonl", "")], "the file is empty"),
            (["--data", Write("bad.jsonl", "{\"text\": \"a\"}\nnot json\n")], "bad.jsonl:2: not valid JSON"),
            (["--data", Write("fields.jsonl", "{\"body\": \"a\"}\n")], "--text-field NAME"),
            (["--data", Write("short.txt", "Too short for a block."), "--block-size", "16"], "22 tokens with UTF-8 bytes (ids 0..255), but --block-size 16 needs at least 33"),
            (["--data", Write("plain.txt", "Some text."), "--text-field", "body"], "is read as plain text, so --text-field does not apply"),
            (["--text-field", "body"], "give --data FILE too"),
        };
        foreach (var (args, expected) in cases)
        {
            var (code, _, error) = RunSample([.. args, "--tokenizer", "bytes", "--output", output]);
            Assert.True(code == 2, $"{string.Join(' ', args)}: exit code {code}, stderr: {error}");
            Assert.Contains(expected, error);
            Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.DoesNotContain("   at ", error);
        }
        Assert.False(Directory.Exists(output), "nothing is created before the data file is known to be good");
    }

    [Fact]
    public void The_sample_trains_on_a_jsonl_file_and_reports_the_held_out_perplexity()
    {
        // 40 documents of made-up sentences from a small vocabulary: about 20 KB, 300 blocks of 64 bytes.
        var random = new Random(7);
        string[] words = ["the", "whale", "sea", "ship", "captain", "white", "harpoon", "deck", "sail", "wind", "boat", "crew"];
        var lines = Enumerable.Range(0, 40).Select(d =>
            "{\"id\": " + d + ", \"body\": \"" + string.Join(' ', Enumerable.Range(0, 90).Select(_ => words[random.Next(words.Length)])) + ".\"}");
        string path = Write("sea.jsonl", string.Join('\n', lines) + "\n");
        string output = Path.Combine(_dir, "out");

        var (code, stdout, error) = RunSample("--data", path, "--text-field", "body", "--tokenizer", "bytes", "--steps", "40", "--seed", "3", "--output", output);

        Assert.True(code == 0, $"exit code {code}\n{stdout}\n{error}");
        Assert.Contains($"data: {path} (JSONL, 40 documents from field \"body\")", stdout);
        Assert.Contains("held-out blocks (the last 10%;", stdout);
        Assert.Contains("bitwise identical: True", stdout);
        Assert.Contains("causal-lm: OK", stdout); // OK needs the held-out perplexity to go down
        Assert.True(File.Exists(Path.Combine(output, "adapter", "adapter_config.json")));
        Assert.Empty(error);
    }

    [Fact]
    public void Text_without_spaces_still_gets_a_prompt()
    {
        // The default prompt is words from the held-out text; this text has no second word to start at.
        string path = Write("sea.txt", string.Concat(Enumerable.Repeat("鯨は海を泳ぐ。船は風で走る。", 60)));

        var (code, stdout, error) = RunSample("--data", path, "--tokenizer", "bytes", "--steps", "20", "--output", Path.Combine(_dir, "out"));

        Assert.True(code == 0, $"exit code {code}\n{stdout}\n{error}");
        Assert.Contains("(plain text), 840 characters, 2,520 tokens", stdout);
        var before = stdout.Split('\n').Single(l => l.StartsWith("before: \"", StringComparison.Ordinal));
        Assert.True(before.Length > "before: \"\"".Length + 24, before); // 8 prompt bytes (at least 2 characters) + 24 generated
    }
}
