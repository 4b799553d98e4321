using Peft.Text;

namespace Peft.Text.Tests;

public sealed class JsonlDatasetTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("peft-jsonl").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string content)
    {
        string path = Path.Combine(_dir, Guid.NewGuid().ToString("N") + ".jsonl");
        File.WriteAllText(path, content);
        return path;
    }

    [Fact]
    public void ReadsTextLabelLinesSkippingBlankOnes()
    {
        string path = Write("{\"text\": \"good\", \"label\": 1}\n\n{\"text\": \"bad\", \"label\": false}\r\n   \n{\"text\": \"ok\", \"label\": 2, \"extra\": [1]}\n");
        var rows = JsonlDataset.ReadTextLabel(path);
        Assert.Equal([new TextLabelExample("good", 1), new TextLabelExample("bad", 0), new TextLabelExample("ok", 2)], rows);
    }

    [Fact]
    public void FieldNamesAreConfigurable()
    {
        string path = Write("{\"sentence\": \"fine\", \"class\": 1}\n");
        Assert.Equal([new TextLabelExample("fine", 1)], JsonlDataset.ReadTextLabel(path, textField: "sentence", labelField: "class"));
    }

    [Fact]
    public void ReadsPromptCompletion()
    {
        string path = Write("{\"prompt\": \"Q: 2+2? A:\", \"completion\": \" 4\"}\n{\"prompt\": \"né\", \"completion\": \"\"}\n");
        Assert.Equal([new PromptCompletionExample("Q: 2+2? A:", " 4"), new PromptCompletionExample("né", "")], JsonlDataset.ReadPromptCompletion(path));
    }

    [Theory]
    [InlineData("{\"text\": \"a\", \"label\": 0}\n{\"text\": \"b\", \"label\": 1\n", 2, "not valid JSON")]
    [InlineData("{\"text\": \"a\", \"label\": 0}\n\n[1, 2]\n", 3, "expected a JSON object")]
    [InlineData("{\"label\": 0}\n", 1, "missing field \"text\"")]
    [InlineData("{\"text\": 5, \"label\": 0}\n", 1, "field \"text\" must be a string")]
    [InlineData("{\"text\": \"a\", \"label\": \"positive\"}\n", 1, "\"positive\"")]
    [InlineData("{\"text\": \"a\", \"label\": 0}\n{\"text\": \"a\", \"label\": 1.5}\n", 2, "1.5")]
    [InlineData("{\"text\": \"a\", \"label\": -1}\n", 1, "non-negative")]
    public void BadLinesNameFileAndLine(string content, int line, string problem)
    {
        string path = Write(content);
        var ex = Assert.Throws<JsonlFormatException>(() => JsonlDataset.ReadTextLabel(path));
        Assert.Equal(path, ex.FilePath);
        Assert.Equal(line, ex.LineNumber);
        Assert.StartsWith($"{path}:{line}: ", ex.Message);
        Assert.Contains(problem, ex.Message);
    }

    [Fact]
    public void MissingFileIsReportedByPath()
    {
        string path = Path.Combine(_dir, "absent.jsonl");
        var ex = Assert.Throws<FileNotFoundException>(() => JsonlDataset.ReadPromptCompletion(path));
        Assert.Contains(path, ex.Message);
    }
}
